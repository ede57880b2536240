"""The archive state of vault points, cached on the point so that looking at one never costs.

Reading a chunk from Azure's Archive tier needs a rehydration first, which Azure bills (per GB
retrieved and per blob read) and completes in hours. So a page view never lists the vault and never
starts one: it reads the counts cached on the point (`notice`). They are written by the tiering job
(`record_states`, one listing for every point it looked at) and by the rehydrate action
(`vault.actions.rehydrate_point`), and checked again on their sample of archived blob names (one
HEAD request each) at most every `CHECK_EVERY`, once a rehydration may have finished. A read that
meets an archived chunk although the cache said none were marks the point (`note_archived_read`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db.models import Q
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

    No listing: the cached counts, checked again on their sample at most every CHECK_EVERY."""
    if point.local or point.vault_status != RecoveryPoint.VaultStatus.REPLICATED or point.archived_chunks == 0:
        return None
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
