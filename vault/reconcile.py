"""Bring the local store and the RecoveryPoint rows back into agreement.

A backup publishes its store point, then writes its row (protection/backup.py). A worker that dies in
between leaves a point nobody knows about, whose chunks a GC keeps for ever; a store point removed
behind the product's back leaves a row that promises a restore it cannot give. The reconciler finds
both, on worker start, nightly and on demand (`manage.py vault reconcile [--dry-run]`):

- a store point without a row is left alone while its backup may still write the row (its job is
  queued or running, or it was published in the last few minutes); otherwise it is adopted when its
  manifest carries what a row needs and its VM is still known, and removed from the store if not;
- a row whose local point is gone is marked not local, and deleted when the vault has no copy either
  (it names nothing restorable); a row whose point cannot be read is marked damaged, never deleted.

Every change is audited in the transaction that makes it. Rows are listed before the store: a row
listed first had its point published before it (the backup's order), so a point missing from the later
store listing is really gone, not about to appear; every change re-checks its row under a row lock.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from django.db import DatabaseError, IntegrityError, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.actions import record
from inventory.models import VirtualMachine
from jobs.models import JobRun
from jobs.registry import job_kind
from jobs.runner import JobContext
from vault import engine, healing
from vault.models import RecoveryPoint, RecoveryPointDisk, pinned_by
from vault.storage import local_store

RECONCILE_KIND = "vault.reconcile"
RECONCILER_ACTOR = "reconciler"
# A backup writes its row a moment after publishing its point; a point younger than this may be in
# that gap (even when its job row says otherwise, e.g. a job marked errored while still finishing).
SETTLE_SECONDS = 15 * 60
# What a manifest's meta must carry for its row to be recreated (protection/backup.py writes it).
ROW_META_KEYS = (
    "vm_id",
    "instance_uuid",
    "created",
    "completed",
    "consistency",
    "consistency_note",
    "config",
    "disks",
    "logical_bytes",
    "new_bytes",
    "read_bytes",
)
DISK_META_KEYS = (
    "key",
    "label",
    "capacity_bytes",
    "file_name",
    "read_path",
    "read_reason",
    "change_id",
    "bytes_read",
    "new_bytes",
    "chunks",
    "new_chunks",
    "zero_chunks",
)


@dataclass(frozen=True)
class Finding:
    """One point the reconciler acted on (or would have): which, and why."""

    point_id: str
    about: str  # the point for a person: "point 1c0f… of app-01 from 2026-12-03 03:00"
    reason: str


# Per kind of finding: the sentence for a change made, and for a dry run.
_SENTENCES = {
    "adopted": ("Adopted {about}: {reason}.", "Would adopt {about}: {reason}."),
    "removed_from_store": (
        "Removed {about} from the store: {reason}.",
        "Would remove {about} from the store: {reason}.",
    ),
    "rows_removed": ("Deleted the row of {about}: {reason}.", "Would delete the row of {about}: {reason}."),
    "rows_marked_not_local": (
        "Marked {about} as not on this server: {reason}.",
        "Would mark {about} as not on this server: {reason}.",
    ),
    "damaged": ("Marked {about} damaged: {reason}.", "Would mark {about} damaged: {reason}."),
    "left_for_later": ("Left {about} for a later run: {reason}.", "Would leave {about} for a later run: {reason}."),
}


# Per kind of finding, for the summary: what is counted, and what was (or would be) done to it.
_SUMMARY = {
    "adopted": ("point", "adopted", "to adopt"),
    "removed_from_store": ("store point", "removed", "to remove"),
    "rows_removed": ("row", "deleted", "to delete"),
    "rows_marked_not_local": ("row", "marked not local", "to mark not local"),
    "damaged": ("point", "marked damaged", "to mark damaged"),
    "left_for_later": ("point", "left for later", "to leave for later"),
}


@dataclass
class ReconcileReport:
    """What one run did (or, on a dry run, would do), point by point."""

    adopted: list[Finding] = field(default_factory=list)
    removed_from_store: list[Finding] = field(default_factory=list)
    rows_removed: list[Finding] = field(default_factory=list)
    rows_marked_not_local: list[Finding] = field(default_factory=list)
    left_for_later: list[Finding] = field(default_factory=list)
    damaged: list[Finding] = field(default_factory=list)
    dry_run: bool = False

    def lines(self) -> list[str]:
        """One sentence per finding, then a summary, for job logs and the command line."""
        lines = []
        for kind, (done, would) in _SENTENCES.items():
            template = would if self.dry_run else done
            lines += [template.format(about=f.about, reason=f.reason) for f in getattr(self, kind)]
        lines.append(self.summary())
        return lines

    def summary(self) -> str:
        parts = []
        for kind, (noun, done, would) in _SUMMARY.items():
            n = len(getattr(self, kind))
            if n:
                parts.append(f"{n} {noun}{'' if n == 1 else 's'} {would if self.dry_run else done}")
        if not parts:
            return "The store and the database agree: nothing to do."
        return f"{'Dry run, nothing changed' if self.dry_run else 'Reconciled'}: {', '.join(parts)}."

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(
    *, dry_run: bool = False, actor: str = RECONCILER_ACTOR, now: dt.datetime | None = None
) -> ReconcileReport:
    """Compare the local store with the rows and settle every difference (see the module docstring).
    `dry_run` changes nothing and reports what would be done; `now` decides what is recent."""
    now = now or timezone.now()
    store = local_store()
    report = ReconcileReport(dry_run=dry_run)
    rows = dict(RecoveryPoint.objects.values_list("pk", "local"))
    known = {str(pk) for pk in rows}
    local_rows = sorted(str(pk) for pk, local in rows.items() if local)
    in_store = set(store.list_points())  # after the rows, on purpose (module docstring)
    settle = _Settler(store, report, dry_run=dry_run, actor=actor, now=now)
    for point_id in sorted(in_store - known):
        settle.orphan(point_id)
    for point_id in local_rows:
        if point_id in in_store:
            settle.readable(point_id)
        else:
            settle.missing(point_id)
    return report


@job_kind(RECONCILE_KIND, title="Reconcile the store with the database", queue="vault")
def reconcile_job(ctx: JobContext, dry_run: bool = False) -> dict[str, Any]:
    report = reconcile(dry_run=dry_run)
    for line in report.lines():
        ctx.log(line)
    return report.as_dict()


class _Settler:
    """Settles one difference at a time, each in its own transaction with its audit row."""

    def __init__(
        self, store: engine.Store, report: ReconcileReport, *, dry_run: bool, actor: str, now: dt.datetime
    ) -> None:
        self.store = store
        self.report = report
        self.dry_run = dry_run
        self.actor = actor
        self.now = now

    # A store point without a row --------------------------------------------------------------------

    def orphan(self, point_id: str) -> None:
        try:
            point: engine.Point | None = self.store.open_point(point_id)
        except engine.PointNotFound:
            return  # deleted since the listing
        except engine.CorruptPoint:
            point = None  # no manifest to adopt from: it can only go
        meta = point.meta if point is not None else {}
        about = _describe(point_id, meta)
        wait = self._reason_to_wait(point_id, point, meta)
        if wait:
            self.report.left_for_later.append(Finding(point_id, about, wait))
            return
        problem = _why_not_adoptable(point_id, point, meta)
        if problem:
            self._remove_orphan(Finding(point_id, about, f"it has no row, and {problem}"))
        else:
            self._adopt(point_id, meta, about)

    def _reason_to_wait(self, point_id: str, point: engine.Point | None, meta: dict[str, Any]) -> str:
        """Why the point's backup may still write its row ("" when nothing suggests it will)."""
        job = _job_id(meta.get("job"))
        active = [JobRun.Status.QUEUED, JobRun.Status.RUNNING]
        if job and JobRun.objects.filter(pk=job, status__in=active).exists():
            return "its backup job is still running and writes the row when it ends"
        published = _published_at(self.store, point_id, point)
        if published is not None and (self.now - published).total_seconds() < SETTLE_SECONDS:
            return f"it was published less than {SETTLE_SECONDS // 60} minutes ago; its backup may still write the row"
        return ""

    def _adopt(self, point_id: str, meta: dict[str, Any], about: str) -> None:
        finding = Finding(
            point_id, about, "it had no row (its backup stopped before writing it); recreated from its manifest"
        )
        if self.dry_run:
            self.report.adopted.append(finding)
            return
        try:
            with transaction.atomic():
                row = _create_row(point_id, meta)
                details = {"point": point_id, "vm": row.vm.name, "created": meta["created"], "job": meta.get("job")}
                record(self.actor, "point.adopted", target=row, details=details)
        except IntegrityError:  # its backup wrote the row after all
            return
        except DatabaseError as exc:  # a value the row refuses: say so every run rather than guess
            self.report.left_for_later.append(Finding(point_id, about, f"its row could not be written: {exc}"))
            return
        self.report.adopted.append(finding)

    def _remove_orphan(self, finding: Finding) -> None:
        if self.dry_run:
            self.report.removed_from_store.append(finding)
            return
        with transaction.atomic():
            if _is_uuid(finding.point_id) and RecoveryPoint.objects.filter(pk=finding.point_id).exists():
                return  # its backup wrote the row after all
            try:
                self.store.delete_point(finding.point_id)
            except engine.PointInUse:
                self.report.left_for_later.append(
                    Finding(finding.point_id, finding.about, "a running backup builds on it")
                )
                return
            except engine.PointNotFound:
                return
            except (engine.StoreError, OSError) as exc:
                later = Finding(finding.point_id, finding.about, f"it could not be removed: {exc}")
                self.report.left_for_later.append(later)
                return
            details = {"point": finding.point_id, "reason": finding.reason}
            record(self.actor, "point.orphan_removed", target_label=finding.about, details=details)
        self.report.removed_from_store.append(finding)

    # A row whose local point is gone or unreadable ------------------------------------------------------

    def missing(self, point_id: str) -> None:
        with transaction.atomic():
            row = _locked_local_row(point_id)
            if row is None or self._in_store(point_id):
                return  # changed since the listing: removed by a prune, or there after all
            about = _describe_row(row)
            if row.vault_status == RecoveryPoint.VaultStatus.REPLICATED:
                reason = "its local copy is gone from the store; its copy in the vault remains"
                self._apply(row, "rows_marked_not_local", Finding(point_id, about, reason), _mark_not_local)
            elif users := pinned_by(row.pk):
                # A pinned row is never deleted (vault.pins): what uses it must end first.
                wait = f"its point is gone from the store, but {users} uses it; its row goes after that ends"
                self.report.left_for_later.append(Finding(point_id, about, wait))
            else:
                reason = "its point is gone from the store and is not in the vault, so it names nothing restorable"
                self._apply(row, "rows_removed", Finding(point_id, about, reason), _delete_row)

    def readable(self, point_id: str) -> None:
        try:
            self.store.open_point(point_id)
        except engine.CorruptPoint as exc:
            problem = f"the store cannot read this point: {exc}"
        except engine.PointNotFound:
            self.missing(point_id)
            return
        else:
            return
        with transaction.atomic():
            row = _locked_local_row(point_id)
            if row is None or (row.damaged and f"{healing.LOCAL}: {problem}" in row.damage):
                return  # gone meanwhile, or already known
            self.report.damaged.append(Finding(point_id, _describe_row(row), f"{healing.LOCAL}: {problem}"))
            if not self.dry_run:  # recorded, and audited, the way every other check records damage
                healing.mark_damaged(row, [problem], healing.LOCAL, actor=self.actor)

    def _apply(self, row: RecoveryPoint, kind: str, finding: Finding, change: Callable[[RecoveryPoint], str]) -> None:
        """Make `change` to a row (it returns the audit action) and audit it; only report on a dry run."""
        getattr(self.report, kind).append(finding)
        if self.dry_run:
            return
        details = {"point": finding.point_id, "reason": finding.reason}
        action = change(row)
        record(self.actor, action, target_label=finding.about, details=details)

    def _in_store(self, point_id: str) -> bool:
        return (self.store.points_dir / point_id).is_dir()


def _locked_local_row(point_id: str) -> RecoveryPoint | None:
    # of=("self",): the VM row is joined for its name, not to be locked.
    query = RecoveryPoint.objects.select_for_update(of=("self",)).select_related("vm")
    return query.filter(pk=point_id, local=True).first()


def _mark_not_local(row: RecoveryPoint) -> str:
    row.local = False
    row.save(update_fields=["local"])
    return "point.local_missing"


def _delete_row(row: RecoveryPoint) -> str:
    row.delete()
    return "point.row_removed"


# Reading a manifest's meta --------------------------------------------------------------------------


def _why_not_adoptable(point_id: str, point: engine.Point | None, meta: dict[str, Any]) -> str:
    """ "" when a row can be made from the point's meta, else the reason, as the end of a sentence."""
    if point is None:
        return "its manifest cannot be read"
    if not _is_uuid(point_id):
        return "its name is not a recovery point id"
    missing = [key for key in ROW_META_KEYS if key not in meta]
    if missing:
        return f"its manifest lacks what a row needs ({', '.join(missing)}; written before points carried it)"
    if not isinstance(meta["vm_id"], int):
        return "its manifest's description of the backup is malformed"
    try:
        disks = {str(disk["key"]) for disk in meta["disks"] if all(k in disk for k in DISK_META_KEYS)}
        times = _backup_times(meta)
    except (TypeError, ValueError, KeyError):
        return "its manifest's description of the backup is malformed"
    if disks != set(point.disk_keys) or len(meta["disks"]) != len(disks) or times is None:
        return "its manifest's description of the backup does not match its disks"
    if not VirtualMachine.objects.filter(pk=meta["vm_id"], instance_uuid=meta["instance_uuid"]).exists():
        return "its VM is no longer in the inventory"
    return ""


def _backup_times(meta: dict[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    """(created, completed) of the backup the meta describes; None when either is not a date-time."""
    created, completed = parse_datetime(meta["created"]), parse_datetime(meta["completed"])
    return (created, completed) if created and completed else None


def _create_row(point_id: str, meta: dict[str, Any]) -> RecoveryPoint:
    times = _backup_times(meta)
    if times is None:  # _why_not_adoptable refuses such a point before any row is made
        raise ValueError(f"point {point_id}: its manifest does not say when the backup ran")
    created, completed = times
    row = RecoveryPoint.objects.create(
        id=uuid.UUID(point_id),
        vm=VirtualMachine.objects.get(pk=meta["vm_id"]),
        group_id=_existing("group", meta.get("group_id")),
        job_id=_existing("job", _job_id(meta.get("job"))),
        created=created,
        completed=completed,
        consistency=meta["consistency"],
        consistency_note=meta["consistency_note"],
        logical_bytes=meta["logical_bytes"],
        new_bytes=meta["new_bytes"],
        read_bytes=meta["read_bytes"],
        duration_seconds=max(0.0, (completed - created).total_seconds()),
        config=meta["config"],
    )
    RecoveryPointDisk.objects.bulk_create(_disk_row(row, disk) for disk in meta["disks"])
    return row


def _disk_row(row: RecoveryPoint, disk: dict[str, Any]) -> RecoveryPointDisk:
    fields = {key: disk[key] for key in DISK_META_KEYS}
    fields["change_id"] = fields["change_id"] or ""  # no CBT: the backup writes "" (None from older code)
    return RecoveryPointDisk(point=row, **fields)


def _existing(relation: str, pk: Any) -> Any:
    """`pk` when the row it names (through RecoveryPoint.<relation>) still exists, else None: a
    deleted group or job must not keep a point from being adopted."""
    if pk is None:
        return None
    # Both relations are foreign keys, so the related model is a class, never None or "self".
    model = cast(type[models.Model], RecoveryPoint._meta.get_field(relation).related_model)
    try:
        return pk if model._default_manager.filter(pk=pk).exists() else None
    except (TypeError, ValueError):
        return None


def _job_id(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and _is_uuid(value) else None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _published_at(store: engine.Store, point_id: str, point: engine.Point | None) -> dt.datetime | None:
    """When the point was committed: its manifest says so; for an unreadable one, its directory's time."""
    stamp = point.manifest.committed_at if point is not None else None
    if isinstance(stamp, str):
        parsed = parse_datetime(stamp.replace("Z", "+00:00"))
        if parsed is not None:
            return parsed
    try:
        return dt.datetime.fromtimestamp((store.points_dir / point_id).stat().st_mtime, tz=dt.UTC)
    except FileNotFoundError:
        return None


def _describe(point_id: str, meta: dict[str, Any]) -> str:
    name = meta.get("vm")
    if not name and isinstance(meta.get("vm_id"), int):
        name = VirtualMachine.objects.filter(pk=meta["vm_id"]).values_list("name", flat=True).first()
    created = meta.get("created")
    when = f" from {created[:16].replace('T', ' ')}" if isinstance(created, str) else ""
    return f"point {point_id} of {name or 'an unknown VM'}{when}"


def _describe_row(row: RecoveryPoint) -> str:
    return f"point {row.pk} of {row.vm.name} from {timezone.localtime(row.created):%Y-%m-%d %H:%M}"
