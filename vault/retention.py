"""Retention rules: which recovery points a prune keeps and which it removes, with a reason for each.

Pure functions over `PointRef`s (no Django, no database), so the same code drives the prune itself and
the administrator's "prune preview". What the preview explains:

- Local retention keeps every point younger than N days (24-hour periods counted back from now) and
  the newest M points.
- GFS (grandfather-father-son) retention keeps the newest point of each of the last D days, W ISO weeks
  (Monday to Sunday), M calendar months and Y calendar years that have points, in the configured time
  zone, counted as `restic forget --keep-daily/--keep-weekly/--keep-monthly/--keep-yearly` counts them.
  One point can count for several rules at once: the newest point of a week that is also a kept day fills a slot
  of both; the preview names the first (daily, then weekly, monthly, yearly).
- Always, whatever the numbers: a point under a retention lock is kept until the lock expires; a point
  dated after "now" (a clock out of step) is kept; and the newest point is never removed, so a VM keeps
  at least its latest point even when every count is 0. Locked and future-dated points are extra: they
  never take the place of a point the rules above would keep.

Points with equal creation times are ordered by id (the larger id counts as newer), so the outcome
never depends on the order of the input. Both lists of a `Decision` are sorted newest first.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

__all__ = ["Decision", "PointRef", "gfs_retention", "local_retention"]

NOT_KEPT = "not kept by any rule"
_GFS_KINDS = ("daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class PointRef:
    """A recovery point as retention sees it. `locked_until`: the point must not be deleted before then."""

    id: str
    created: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """`keep` and `remove` partition the input, newest first; `reasons[id]` says why, for every point."""

    keep: list[PointRef]
    remove: list[PointRef]
    reasons: dict[str, str]


def local_retention(points: Iterable[PointRef], *, days: int, count: int, now: datetime) -> Decision:
    """Keep the points younger than `days` days and the newest `count` points.

    Locked and future-dated points are kept and are not counted in `count` (see `gfs_retention` for
    why); the newest point is kept even when neither rule would keep it.
    """
    _check_count("days", days)
    _check_count("count", count)
    _check_aware("now", now)
    ordered = _sorted_newest_first(points)
    cutoff = now - timedelta(days=days)
    reasons: dict[str, str] = {}
    rank = 0  # position among the points the rules apply to (not locked, not in the future)
    set_aside_newer = False
    for point in ordered:
        protection = _protection(point, now, None)
        if protection:
            reasons[point.id] = protection
            set_aside_newer = True
            continue
        rank += 1
        if point.created > cutoff:
            reasons[point.id] = f"within the last {_plural(days, 'day')}"
        elif rank <= count:
            reason = "the newest point" if count == 1 else f"one of the newest {count}"
            if set_aside_newer:
                reason += " (not counting locked or future-dated points)"
            reasons[point.id] = reason
    _keep_newest(ordered, now, reasons, "newest point: the latest point of a VM is never removed")
    return _decision(ordered, reasons)


def gfs_retention(
    points: Iterable[PointRef],
    *,
    daily: int,
    weekly: int,
    monthly: int,
    yearly: int,
    tz: tzinfo,
    now: datetime | None = None,
) -> Decision:
    """Grandfather-father-son retention, as `restic forget --keep-daily/weekly/monthly/yearly`.

    Walking the points newest first, a point is kept by a rule when it is the newest point of its
    bucket (calendar day, ISO week, calendar month, calendar year, in `tz`) and fewer than N buckets of
    that kind have been kept so far. Only periods that have points count. `now` (default: the current
    time) decides which locks are still in force and which points are dated in the future.

    Two deliberate differences from restic: all counts 0 keeps the newest point (restic keeps
    everything), and no extra oldest point is kept when a count has slots left (recent restic does).
    """
    limits = {"daily": daily, "weekly": weekly, "monthly": monthly, "yearly": yearly}
    for kind, limit in limits.items():
        _check_count(kind, limit)
    if not isinstance(tz, tzinfo):
        raise TypeError(f"tz must be a tzinfo, not {type(tz).__name__}")
    if now is None:
        now = datetime.now(tz)
    _check_aware("now", now)
    ordered = _sorted_newest_first(points)

    # Locked (and future-dated) points are set aside before the rules run: they are kept, but they
    # neither fill a slot nor claim their day/week/month/year, so the next-newest point of that period
    # is the one the schedule keeps. Why: a lock is put on for reasons of its own (legal hold, evidence
    # of an incident, a known-good state before a risky change), and the locked point may even be one
    # nobody would restore from (a compromised VM kept as evidence). The administrator's schedule
    # should still deliver its N days, weeks, months and years of ordinary points, and a lock should
    # only ever keep more, never make the schedule keep less of the regular history. (It does: setting
    # points aside can only move the remaining points up the ranking, never down.)
    # Proxmox Backup Server treats protected snapshots the same way. A clock far ahead, likewise, must
    # not let one bogus point fill the first slot of every kind.
    buckets_kept: dict[str, set[Hashable]] = {kind: set() for kind in _GFS_KINDS}
    reasons: dict[str, str] = {}
    for point in ordered:
        protection = _protection(point, now, tz)
        if protection:
            reasons[point.id] = protection
            continue
        local = point.created.astimezone(tz)
        for kind in _GFS_KINDS:
            kept = buckets_kept[kind]
            if len(kept) >= limits[kind]:
                continue
            key, label = _bucket(kind, local)
            if key in kept:
                continue  # a newer point already stands for this period
            # Like restic, a point fills a slot of every kind it is the newest of, not only the first.
            kept.add(key)
            reasons.setdefault(point.id, f"newest of {label} ({kind} {len(kept)} of {limits[kind]})")

    if any(limits.values()):
        safety = "newest point: the latest point of a VM is never removed"
    else:
        safety = "newest point: every count is 0, but a prune never removes the latest point"
    _keep_newest(ordered, now, reasons, safety)
    return _decision(ordered, reasons)


def _bucket(kind: str, local: datetime) -> tuple[Hashable, str]:
    """The period of `kind` that the local time `local` falls in: a comparable key and a label."""
    if kind == "daily":
        return local.date(), local.date().isoformat()
    if kind == "weekly":
        # The ISO year, not the calendar year: 2024-12-30 is in week 2025-W01.
        iso = local.isocalendar()
        return (iso.year, iso.week), f"week {iso.year}-W{iso.week:02d}"
    if kind == "monthly":
        return (local.year, local.month), f"{local.year}-{local.month:02d}"
    return local.year, str(local.year)


def _protection(point: PointRef, now: datetime, tz: tzinfo | None) -> str | None:
    """Why `point` is kept whatever the rules say, or None."""
    if point.locked_until is not None and point.locked_until > now:
        return f"locked until {_moment(point.locked_until, tz)}"
    if point.created > now:
        return "dated after now (clock out of step?), kept to be safe"
    return None


def _keep_newest(ordered: list[PointRef], now: datetime, reasons: dict[str, str], reason: str) -> None:
    """Never remove the newest point. Future-dated points are already kept, so the newest point that is
    not in the future is the VM's latest real point: keep that one."""
    for point in ordered:
        if point.created <= now:
            reasons.setdefault(point.id, reason)
            return


def _decision(ordered: list[PointRef], reasons: dict[str, str]) -> Decision:
    keep = [point for point in ordered if point.id in reasons]
    remove = [point for point in ordered if point.id not in reasons]
    return Decision(
        keep=keep,
        remove=remove,
        reasons={point.id: reasons.get(point.id, NOT_KEPT) for point in ordered},
    )


def _sorted_newest_first(points: Iterable[PointRef]) -> list[PointRef]:
    points = list(points)
    seen: set[str] = set()
    duplicates: set[str] = set()
    for point in points:
        (duplicates if point.id in seen else seen).add(point.id)
        _check_aware(f"created of point {point.id}", point.created)
        if point.locked_until is not None:
            _check_aware(f"locked_until of point {point.id}", point.locked_until)
    if duplicates:
        raise ValueError(f"duplicate point ids: {', '.join(sorted(duplicates))}")
    return sorted(points, key=lambda point: (point.created, point.id), reverse=True)


def _moment(when: datetime, tz: tzinfo | None) -> str:
    """`when` for a person: the date alone at midnight, else date, time and zone."""
    if tz is not None:
        when = when.astimezone(tz)
    if (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return when.date().isoformat()
    return when.strftime("%Y-%m-%d %H:%M %Z").rstrip()


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{n} {word}s"


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a whole number of 0 or more, not {value!r}")


def _check_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime, not {value!r}")
