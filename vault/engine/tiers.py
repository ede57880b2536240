"""Reading across tiers, and moving old vault points to cheaper access tiers.

`TieredStore` is what restores read through: the local store first (fast, on disk), the vault for
points or chunks that exist only there (pruned locally, or a local store lost with its disk). It
has the two methods DiskReader, restore_disk and verify_point use, so they work unchanged.

It also heals: a local chunk found corrupt (quarantined by the local store, now or earlier) is read
from the vault, checked, and written back into the local store; with `vault_first` (checking vault
copies), a corrupt or missing vault chunk is read locally and uploaded again. Each repair is
appended to `repairs` for the caller to log and audit.

Tiering moves the chunks that only old points use to Cool, Cold or Archive. Chunks are shared
between points, so a chunk that any newer point needs stays where it is, and indexes and manifests
always stay Hot (small, and needed to browse a point). An archived chunk cannot be read until it is
rehydrated, which Azure does within hours (Azurite at once): `archive_state` counts a point's
archived chunks from one listing (`archive_states` many points from one; `check_readable` refuses
a job's read with it), `sample_archive_state` checks a few of them again with one HEAD each, and
`start_rehydration` starts it, on someone's confirmed request only. None of them runs on a page
view: the Django side caches the counts on the point (`vault.archive`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .blobs import ARCHIVE, COLD, COOL, HOT, BackendError, BlobArchived, BlobInfo, BlobNotFound
from .errors import ChunkCorrupt, ChunkError, ChunkMissing, PointNotFound, StoreError
from .format import decode_chunk
from .remote import RemotePoint, RemoteVault
from .store import Point, Store

TIER_ORDER = {HOT: 0, COOL: 1, COLD: 2, ARCHIVE: 3}


class NeedsRehydration(StoreError):
    """Some chunks of the point are archived, so it cannot be read until someone rehydrates them
    (which costs and takes hours: nothing here starts it). `state` is what was counted."""

    def __init__(self, message: str, state: ArchiveState) -> None:
        super().__init__(message)
        self.state = state
        self.archived = state.archived


@dataclass(frozen=True)
class ChunkRepair:
    """One chunk a read healed: the tier whose copy was replaced and where the good copy came from."""

    digest: str  # hex
    tier: Literal["local", "vault"]  # the tier repaired
    source: str  # the other tier's description (vault) or root (local store)

    def __str__(self) -> str:
        return f"chunk {self.digest} repaired in the {self.tier} tier from {self.source}"


class TieredStore:
    """Reads chunks from the local store, falling back to (and healing from) the vault.

    `vault_first`: read the vault's copy first, e.g. to check a vault point through this object;
    then the local store is the fallback that repairs the vault. `repairs` lists what reads healed;
    `repair_failures` the sentences of repairs that could not be written (the read still succeeded)."""

    def __init__(self, local: Store | None, vault: RemoteVault | None, *, vault_first: bool = False) -> None:
        if local is None and vault is None:
            raise ValueError("a tiered store needs a local store, a vault, or both")
        self.local = local
        self.vault = vault
        self.vault_first = vault_first and vault is not None
        self.local_reads = 0
        self.vault_reads = 0
        self.repairs: list[ChunkRepair] = []
        self.repair_failures: list[str] = []
        self._lock = threading.Lock()  # restore_disk reads from a thread pool

    def open_point(self, point_id: str) -> Point | RemotePoint:
        if self.vault_first:
            assert self.vault is not None
            try:
                return self.vault.open().open_point(point_id)
            except PointNotFound:
                if self.local is None:
                    raise
        if self.local is not None:
            try:
                return self.local.open_point(point_id)
            except PointNotFound:
                if self.vault is None:
                    raise
        assert self.vault is not None
        return self.vault.open().open_point(point_id)

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        if self.vault_first:
            return self._read_vault_then_local(digest, length, verify)
        if self.local is None:
            return self._read_vault(digest, length, verify)
        try:
            data = self.local.read_chunk(digest, length, verify=verify)
        except ChunkCorrupt as err:  # already quarantined by the local store (now or earlier)
            if self.vault is None:
                raise
            return self._repair_local(digest, length, err)
        except ChunkMissing:
            if self.vault is None:
                raise
            return self._read_vault(digest, length, verify)
        self._count(local=1)
        return data

    def _read_vault(self, digest: bytes, length: int, verify: bool) -> memoryview:
        assert self.vault is not None
        data = self.vault.read_chunk(digest, length, verify=verify)
        self._count(vault=1)
        return data

    def _repair_local(self, digest: bytes, length: int, local_error: ChunkCorrupt) -> memoryview:
        """The vault's copy, checked, is the answer; it also replaces the quarantined local chunk."""
        assert self.vault is not None and self.local is not None
        try:
            chunk_file = self.vault.read_chunk_file(digest)
        except ChunkError as err:
            raise ChunkCorrupt(f"{local_error}; no good copy in the vault either: {err}", digest) from err
        data = decode_chunk(chunk_file, digest, length, verify=True)
        self._count(vault=1)
        try:
            self.local.put_chunk_file(digest, chunk_file)
        except (StoreError, OSError) as err:  # the read succeeded; the repair can be tried again
            self._failed(f"chunk {digest.hex()} could not be written back to {self.local.root}: {err}")
        else:
            self._repaired(ChunkRepair(digest.hex(), "local", self.vault.description))
        return data

    def _read_vault_then_local(self, digest: bytes, length: int, verify: bool) -> memoryview:
        assert self.vault is not None
        try:
            return self._read_vault(digest, length, verify)
        except (ChunkCorrupt, ChunkMissing) as err:  # a corrupt one is quarantined in the vault now
            if self.local is None:
                raise
            vault_error = err
        try:
            chunk_file = self.local.read_chunk_file(digest)
        except ChunkError as err:
            raise type(vault_error)(f"{vault_error}; no good copy in the local store either: {err}", digest) from err
        data = decode_chunk(chunk_file, digest, length, verify=True)
        self._count(local=1)
        try:
            self.vault.put_chunk(digest, chunk_file, overwrite=True)
        except (BackendError, StoreError) as err:
            self._failed(f"chunk {digest.hex()} could not be uploaded again to {self.vault.description}: {err}")
        else:
            self._repaired(ChunkRepair(digest.hex(), "vault", str(self.local.root)))
        return data

    def _count(self, *, local: int = 0, vault: int = 0) -> None:
        with self._lock:
            self.local_reads += local
            self.vault_reads += vault

    def _repaired(self, repair: ChunkRepair) -> None:
        with self._lock:
            self.repairs.append(repair)

    def _failed(self, sentence: str) -> None:
        with self._lock:
            self.repair_failures.append(sentence)


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


# How many of a point's archived blob names are kept for a cheap check (one HEAD request each).
ARCHIVE_SAMPLE = 8


@dataclass(frozen=True)
class ArchiveState:
    """Where a vault point's chunk blobs are: how many are archived (and of those, rehydrating),
    their size, the point's chunk count, and a few archived names to check again cheaply."""

    archived: int = 0
    rehydrating: int = 0
    archived_bytes: int = 0
    total: int = 0
    sample: tuple[str, ...] = ()


def _chunk_names(vault: RemoteVault, point_id: str) -> set[str]:
    """The blob names of the chunks a vault point references (its indexes stay Hot: no rehydration)."""
    point = vault.open().open_point(point_id)
    return {vault.chunk_name(d) for key in point.disk_keys for d in point.index(key).referenced()}


def _state_of(names: set[str], blobs: Iterable[BlobInfo]) -> ArchiveState:
    archived = [info for info in blobs if info.name in names and info.tier == ARCHIVE]
    return ArchiveState(
        archived=len(archived),
        rehydrating=sum(1 for info in archived if info.rehydrating),
        archived_bytes=sum(info.size for info in archived),
        total=len(names),
        sample=tuple(sorted(info.name for info in archived)[:ARCHIVE_SAMPLE]),
    )


def archive_state(vault: RemoteVault, point_id: str) -> ArchiveState:
    """The point's archive state from one listing of the vault's chunk blobs (none without tiers)."""
    if not vault.backend.supports_tiers:
        return ArchiveState()
    names = _chunk_names(vault, point_id)
    return _state_of(names, vault.chunk_blobs().values())


def archive_states(vault: RemoteVault, point_ids: Iterable[str]) -> dict[str, ArchiveState]:
    """The archive state of several points from one listing (what the tiering job records)."""
    if not vault.backend.supports_tiers:
        return {point_id: ArchiveState() for point_id in point_ids}
    names = {point_id: _chunk_names(vault, point_id) for point_id in point_ids}
    blobs = list(vault.chunk_blobs().values())
    return {point_id: _state_of(point_names, blobs) for point_id, point_names in names.items()}


def sample_archive_state(vault: RemoteVault, names: Iterable[str]) -> tuple[int, int]:
    """(archived, rehydrating) among these blobs: one HEAD request each, never a listing. A blob
    gone since (collected) counts as not archived."""
    archived = rehydrating = 0
    for name in names:
        try:
            info = vault.backend.info(name)
        except BlobNotFound:
            continue
        if info.tier == ARCHIVE:
            archived += 1
            rehydrating += 1 if info.rehydrating else 0
    return archived, rehydrating


def sample_point_chunks(vault: RemoteVault, point_id: str, count: int = ARCHIVE_SAMPLE) -> tuple[int, int]:
    """(archived, rehydrating) among `count` of the point's chunk blobs spread evenly over its
    chunks: reads its indexes (Hot) and makes one HEAD request per blob, never a listing. A quick
    look at a point whose archive state was never counted."""
    if not vault.backend.supports_tiers:
        return 0, 0
    names = sorted(_chunk_names(vault, point_id))
    step = max(1, len(names) // max(1, count))
    return sample_archive_state(vault, names[::step][:count])


def start_rehydration(
    vault: RemoteVault, point_id: str, *, priority: str = "Standard"
) -> tuple[ArchiveState, ArchiveState]:
    """Ask for the point's archived chunks to move back to Hot (one listing, then one request per
    archived blob not already rehydrating); returns the state before and after, the latter checked
    on a sample (Azure leaves them archived and rehydrating for hours, Azurite makes them Hot at once)."""
    if not vault.backend.supports_tiers:
        return ArchiveState(), ArchiveState()
    names = _chunk_names(vault, point_id)
    blobs = list(vault.chunk_blobs().values())
    before = _state_of(names, blobs)
    if not before.archived:
        return before, before
    for info in blobs:
        if info.name in names and info.tier == ARCHIVE and not info.rehydrating:
            vault.backend.set_tier(info.name, HOT, rehydrate_priority=priority)
    still, _rehydrating = sample_archive_state(vault, before.sample)
    if not still:
        return before, ArchiveState(total=before.total)
    return before, ArchiveState(before.archived, before.archived, before.archived_bytes, before.total, before.sample)


def check_readable(vault: RemoteVault, point_id: str) -> ArchiveState:
    """Before a job reads a point from the vault (a restore, a verify): its archive state from one
    listing, raising NeedsRehydration when chunks are archived. Never starts a rehydration: only
    `start_rehydration` does, on someone's confirmed request."""
    state = archive_state(vault, point_id)
    if state.archived:
        raise NeedsRehydration(
            f"{state.archived} chunk(s) of recovery point {point_id} are in the Archive tier: "
            "they must be rehydrated before the point can be read",
            state,
        )
    return state


__all__ = [
    "ARCHIVE",
    "ARCHIVE_SAMPLE",
    "COLD",
    "COOL",
    "HOT",
    "ArchiveState",
    "BlobArchived",
    "ChunkRepair",
    "NeedsRehydration",
    "TieredStore",
    "TieringReport",
    "apply_tiering",
    "archive_state",
    "archive_states",
    "check_readable",
    "sample_point_chunks",
    "sample_archive_state",
    "start_rehydration",
]
