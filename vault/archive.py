"""The archive state of vault points, cached on the point so that looking at one never costs.

Reading a chunk from Azure's Archive tier needs a rehydration first, which Azure bills (per GB
retrieved and per blob read) and completes in hours. So a page view never lists the vault and never
starts one: it reads the counts cached on the point (`notice`). They are written by the tiering job
(`record_states`, one listing for every point it looked at) and by the rehydrate action
(`vault.actions.rehydrate_point`), and checked again on their sample of archived blob names (one
HEAD request each) at most every `CHECK_EVERY`, once a rehydration may have finished. A read that
meets an archived chunk although the cache said none were marks the point (`note_archived_read`).

A job that reads a vault-only point (a whole-VM restore, a vault verify) counts first, from one
listing (`refuse_if_archived`), and refuses with `refusal`'s sentence before changing anything: it
never starts a rehydration either.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from vault import engine
from vault.engine import tiers
from vault.models import RecoveryPoint
from vault.storage import vault_if_configured

log = logging.getLogger(__name__)

CHECK_EVERY = dt.timedelta(minutes=10)
PRIORITIES = ("Standard", "High")
# Shown beside each priority: Azure's documented rehydration times.
REHYDRATION_TIME = {"Standard": "up to 15 hours", "High": "up to 1 hour for blobs under 10 GB"}


@dataclass(frozen=True)
class ArchiveNotice:
    """What a page says instead of reading a point whose vault chunks are archived."""

    archived: int | None  # None: some are (a read met one), not counted yet
    archived_bytes: int
    rehydrating: int
    priority: str  # of the rehydration asked for, "" if none
    requested_at: dt.datetime | None

    @property
    def rehydration_started(self) -> bool:
        return self.requested_at is not None and bool(self.rehydrating or self.archived is None)

    @property
    def times(self) -> dict[str, str]:
        return REHYDRATION_TIME


def notice(point: RecoveryPoint) -> ArchiveNotice | None:
    """The archive notice for a point only the vault holds, or None when it can be read.

    No listing: the cached counts, checked again on their sample at most every CHECK_EVERY; a point
    never counted is looked at once, with a HEAD request for each of a few of its chunks."""
    if point.local or point.vault_status != RecoveryPoint.VaultStatus.REPLICATED:
        return None
    if point.archived_chunks == 0:
        if point.archive_checked_at is not None:
            return None
        _look_at_uncounted(point)  # never counted: a few HEAD requests, once
        if point.archived_chunks == 0:
            return None
    else:
        _check_again_if_due(point)
    if point.archived_chunks == 0:
        return None
    return ArchiveNotice(
        point.archived_chunks,
        point.archived_bytes,
        point.rehydrating_chunks,
        point.rehydration_priority,
        point.rehydration_requested_at,
    )


def _check_again_if_due(point: RecoveryPoint) -> None:
    now = timezone.now()
    due = Q(archive_checked_at__isnull=True) | Q(archive_checked_at__lt=now - CHECK_EVERY)
    # The conditional update lets one request check; the others read the cache as it is.
    if not RecoveryPoint.objects.filter(due, pk=point.pk).update(archive_checked_at=now):
        return
    point.archive_checked_at = now
    vault = vault_if_configured()
    if vault is None:
        return
    if point.archive_sample:
        try:
            archived, _rehydrating = tiers.sample_archive_state(vault, point.archive_sample)
        except engine.BackendError as exc:
            log.info("archive state of point %s not checked: %s", point.pk, exc)
            return
        if archived:
            return
    # The sampled blobs are online again (or none were counted): the next read tries, and a read
    # that still meets an archived chunk marks the point again.
    _save(point, tiers.ArchiveState(), checked_at=now)


def cost(point: RecoveryPoint, priority: str) -> str:
    """What rehydrating the point at `priority` costs and takes, said before anyone confirms it."""
    chunks, size = point.archived_chunks, filesizeformat(point.archived_bytes)
    what = f"the {chunks} archived chunk{'s' if chunks != 1 else ''} ({size}) of this point" if chunks else ""
    what = what or "this point's archived chunks"
    takes = REHYDRATION_TIME.get(priority, REHYDRATION_TIME["Standard"])
    return (
        f"Rehydrating {what} at {priority} priority is billed by Azure (each blob read from the Archive tier "
        f"and each GB retrieved; High at a higher rate than Standard) and takes {takes}."
    )


def refusal(points: list[RecoveryPoint], nothing: str) -> str:
    """The sentence a read of archived points is refused with: how many chunks, that `nothing` (e.g.
    "nothing was restored") happened, and the three ways to rehydrate, with what each costs and takes."""
    chunks = sum(point.archived_chunks or 0 for point in points)
    size = filesizeformat(sum(point.archived_bytes for point in points))
    which = str(points[0].pk) if len(points) == 1 else "POINT"
    whose = "this recovery point" if len(points) == 1 else f"{len(points)} of these recovery points"
    counted = all(point.archived_chunks is not None for point in points)  # None: some, not counted yet
    what = f"{chunks} chunk{'s' if chunks != 1 else ''} ({size})" if counted else "Chunks"
    return (
        f"{what} of {whose} are in the vault's Archive tier, so "
        f"{nothing}: rehydrate first, which Azure bills and completes in {REHYDRATION_TIME['Standard']} "
        f"(Standard) or {REHYDRATION_TIME['High']} (High), with the Rehydrate button on the point's page, "
        f"POST /api/v1/points/{which}/rehydrate/ or manage.py vault rehydrate {which} --yes."
    )


def refuse_if_archived(vault: engine.RemoteVault, points: list[RecoveryPoint], *, nothing: str) -> None:
    """Before a job reads these points from the vault: count their archived chunks from one listing,
    cache the counts, and raise NeedsRehydration with `refusal`'s sentence if any are archived. Starts
    nothing: a rehydration is only ever someone's confirmed request."""
    if not points:
        return
    record_states(vault, points)
    archived = [point for point in points if point.archived_chunks]
    if archived:
        state = tiers.ArchiveState(
            archived=sum(point.archived_chunks or 0 for point in archived),
            archived_bytes=sum(point.archived_bytes for point in archived),
        )
        raise tiers.NeedsRehydration(refusal(archived, nothing), state)


def _look_at_uncounted(point: RecoveryPoint) -> None:
    """A point whose archive state was never counted (tiered before the cache existed, or a cache
    lost): one HEAD request for each of a few of its chunks, so that a download does not break
    half-way on an archived chunk. Done once: the stamp says it was looked at."""
    now = timezone.now()
    if not RecoveryPoint.objects.filter(pk=point.pk, archive_checked_at__isnull=True).update(archive_checked_at=now):
        return  # another request looks (or looked) at it
    point.archive_checked_at = now
    vault = vault_if_configured()
    if vault is None:
        return
    try:
        archived, _rehydrating = tiers.sample_point_chunks(vault, str(point.pk))
    except (engine.BackendError, engine.StoreError) as exc:
        log.info("archive state of point %s not looked at: %s", point.pk, exc)
        return
    if archived:
        note_archived_read(point)


def note_archived_read(point: RecoveryPoint) -> None:
    """A read of the point met an archived chunk although the cache said none were."""
    now = timezone.now()
    RecoveryPoint.objects.filter(pk=point.pk, archived_chunks=0).update(archived_chunks=None, archive_checked_at=now)
    if point.archived_chunks == 0:
        point.archived_chunks, point.archive_checked_at = None, now


def record_state(point: RecoveryPoint, state: tiers.ArchiveState) -> None:
    """Cache a full count (the rehydrate action's, the tiering job's)."""
    _save(point, state, checked_at=timezone.now())


def record_states(vault: engine.RemoteVault, points: list[RecoveryPoint]) -> None:
    """Count and cache the archive state of these points from one listing of the vault (the tiering job)."""
    states = tiers.archive_states(vault, [str(point.pk) for point in points])
    for point in points:
        record_state(point, states[str(point.pk)])


def _save(point: RecoveryPoint, state: tiers.ArchiveState, *, checked_at: dt.datetime) -> None:
    point.archived_chunks = state.archived
    point.archived_bytes = state.archived_bytes
    point.rehydrating_chunks = state.rehydrating
    point.archive_sample = list(state.sample)
    point.archive_checked_at = checked_at
    fields = ["archived_chunks", "archived_bytes", "rehydrating_chunks", "archive_sample", "archive_checked_at"]
    point.save(update_fields=fields)
