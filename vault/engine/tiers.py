"""Reading across tiers, and moving old vault points to cheaper access tiers.

`TieredStore` is what restores read through: the local store first (fast, on disk), the vault for
points or chunks that exist only there (pruned locally, or a local store lost with its disk). It
has the two methods DiskReader, restore_disk and verify_point use, so they work unchanged.

Tiering moves the chunks that only old points use to Cool, Cold or Archive. Chunks are shared
between points, so a chunk that any newer point needs stays where it is, and indexes and manifests
always stay Hot (small, and needed to browse a point). An archived chunk cannot be read until it is
rehydrated, which Azure does within hours (Azurite at once): `archive_state` and `rehydrate_point`
let a restore say so and start it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .blobs import ARCHIVE, COLD, COOL, HOT, BlobArchived
from .errors import ChunkMissing, PointNotFound, StoreError
from .remote import RemotePoint, RemoteVault
from .store import Point, Store

TIER_ORDER = {HOT: 0, COOL: 1, COLD: 2, ARCHIVE: 3}
# What Azure documents for rehydration from Archive, shown to the person who asked for a restore.
REHYDRATION_TIME = {"Standard": "up to 15 hours", "High": "under 1 hour for blobs under 10 GB"}


class NeedsRehydration(StoreError):
    """Some chunks of the point are archived; a rehydration has been started (or is running)."""

    def __init__(self, message: str, archived: int, priority: str) -> None:
        super().__init__(message)
        self.archived = archived
        self.priority = priority


class TieredStore:
    def __init__(self, local: Store | None, vault: RemoteVault | None) -> None:
        if local is None and vault is None:
            raise ValueError("a tiered store needs a local store, a vault, or both")
        self.local = local
        self.vault = vault
        self.local_reads = 0
        self.vault_reads = 0

    def open_point(self, point_id: str) -> Point | RemotePoint:
        if self.local is not None:
            try:
                return self.local.open_point(point_id)
            except PointNotFound:
                if self.vault is None:
                    raise
        assert self.vault is not None
        return self.vault.open().open_point(point_id)

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        if self.local is not None:
            try:
                data = self.local.read_chunk(digest, length, verify=verify)
                self.local_reads += 1
                return data
            except ChunkMissing:
                if self.vault is None:
                    raise
        assert self.vault is not None
        data = self.vault.read_chunk(digest, length, verify=verify)
        self.vault_reads += 1
        return data


@dataclass
class TieringReport:
    tier: str
    points: int = 0
    chunks_moved: int = 0
    bytes_moved: int = 0
    chunks_kept: int = 0  # also used by a newer point, so left where they were
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def apply_tiering(vault: RemoteVault, old_points: Iterable[str], tier: str, *, dry_run: bool = False) -> TieringReport:
    """Move chunks used only by `old_points` to `tier` (never to a hotter one than they are in)."""
    if tier not in (COOL, COLD, ARCHIVE):
        raise ValueError(f"tier must be Cool, Cold or Archive, not {tier!r}")
    report = TieringReport(tier, dry_run=dry_run)
    if not vault.backend.supports_tiers:
        return report
    old = set(old_points)
    old_chunks: set[str] = set()
    young_chunks: set[str] = set()
    for point_id, _key, index in vault.iter_indexes():
        names = {vault.chunk_name(d) for d in index.referenced()}
        if point_id in old:
            old_chunks |= names
        else:
            young_chunks |= names
    report.points = len(old & set(vault.list_points()))
    report.chunks_kept = len(old_chunks & young_chunks)
    movable = old_chunks - young_chunks
    for info in vault.chunk_blobs().values():
        if info.name in movable and TIER_ORDER.get(info.tier, 0) < TIER_ORDER[tier]:
            report.chunks_moved += 1
            report.bytes_moved += info.size
            if not dry_run:
                vault.backend.set_tier(info.name, tier)
    return report


def archive_state(vault: RemoteVault, point_id: str) -> tuple[int, int, int]:
    """(archived, rehydrating, total) chunk blobs of a vault point."""
    point = vault.open().open_point(point_id)
    names = {vault.chunk_name(d) for key in point.disk_keys for d in point.index(key).referenced()}
    archived = rehydrating = 0
    for info in vault.chunk_blobs().values():
        if info.name in names and info.tier == ARCHIVE:
            archived += 1
            rehydrating += 1 if info.rehydrating else 0
    return archived, rehydrating, len(names)


def rehydrate_point(vault: RemoteVault, point_id: str, *, priority: str = "Standard") -> int:
    """Start moving the point's archived chunks back to Hot; returns how many were asked for."""
    point = vault.open().open_point(point_id)
    names = {vault.chunk_name(d) for key in point.disk_keys for d in point.index(key).referenced()}
    started = 0
    for info in vault.chunk_blobs().values():
        if info.name in names and info.tier == ARCHIVE and not info.rehydrating:
            vault.backend.set_tier(info.name, HOT, rehydrate_priority=priority)
            started += 1
    return started


def ensure_readable(vault: RemoteVault, point_id: str, *, priority: str = "Standard") -> None:
    """Before a restore from the vault: rehydrate what is archived, and raise NeedsRehydration with
    an honest estimate unless the service made it readable at once (Azurite does)."""
    archived, _rehydrating, _total = archive_state(vault, point_id)
    if not archived:
        return
    rehydrate_point(vault, point_id, priority=priority)
    still, _rehydrating, _total = archive_state(vault, point_id)
    if still:
        raise NeedsRehydration(
            f"{still} chunk(s) of recovery point {point_id} are in the Archive tier; rehydration to Hot has "
            f"started at {priority} priority, which Azure completes in {REHYDRATION_TIME.get(priority, 'hours')}. "
            "Start the restore again once it is done.",
            still,
            priority,
        )


__all__ = [
    "ARCHIVE",
    "COLD",
    "COOL",
    "HOT",
    "BlobArchived",
    "NeedsRehydration",
    "TieredStore",
    "TieringReport",
    "apply_tiering",
    "archive_state",
    "ensure_readable",
    "rehydrate_point",
]
