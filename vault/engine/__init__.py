"""Deduplicating local store for VM disk images (plain Python, no Django: tested and benchmarked alone).

Like Proxmox Backup Server's fixed index: disks are cut into fixed 4 MiB chunks named by the SHA-256
of their plaintext; a recovery point holds one index (the list of digests) per disk, so every point is
a full image and restoring the newest costs the same as restoring the oldest.

Layout under the store root:

    store.json                          {"format": 1, "chunk_size": 4194304}
    chunks/<first 4 hex>/<64 hex>       one chunk: 1 header byte (0 raw, 1 zstd level 1) + payload
    points/<point id>/manifest.json     disks, their statistics, and the caller's metadata ("meta")
    points/<point id>/<disk key>.idx    binary index: header, digests, SHA-256 of the index
    staging/<point id>.<token>/         a backup in progress: lock, chunks/, point/ (never trusted)
    trash/                              swept staging, deleted points and chunks the GC is sweeping
    bad/<64 hex>                        a quarantined chunk: failed its check on a read, moved out of chunks/
    bad/<64 hex>.why                    when and why it was quarantined
    bad/<64 hex>.repaired               its evidence once a good copy is back in chunks/
    staging.lock                        flock: creating a staging directory and locking it, against recover()
    trash.lock                          flock: GC sweeps and deletions hold it shared while they work in
                                        trash/; recover() empties trash/ only if it gets it exclusively

A backup writes its new chunks and its indexes into its staging directory, fsyncs them in one batch
at commit, renames the chunks into chunks/ (fsyncing those directories), then renames point/ to
points/<id> and fsyncs points/. So a name under chunks/ or points/ always refers to complete, durable
data, and a backup may trust `chunks/<digest>` existing. `Store.recover()` (run by every
`begin_point`) sweeps staging directories whose owner died, and, when no GC or deletion holds
trash.lock, empties trash/, putting back into chunks/ any whole chunk a crashed GC was sweeping.

Healing (like Proxmox Backup Server renaming a failed chunk to `.bad`): every read checks the chunk
against its digest, and one that fails is moved to bad/ by `Store.read_chunk` itself, so verify,
restore, browse and replication all quarantine through one path. A quarantined chunk is absent, so
a backup never reuses it: not by name, not through its previous index (`bad_chunks()` is subtracted
from what it trusts), not through CBT (such a chunk is read even if unchanged). The next backup
that reads those bytes stores the chunk again and its commit marks the record repaired
(`PendingPoint.repaired`), which makes every older point that references it whole again.
`TieredStore` repairs a corrupt chunk from the other tier on the fly, `repair_chunks` in bulk
(`Store.put_chunk_file`, `RemoteVault.read_chunk_file`), and replication checks every chunk before
it uploads it, so damage never crosses tiers.

Typical use:

    store = Store(root)
    with store.begin_point("vm-42.2026-11-25T0300") as pending, FileSource(image) as source:
        previous = store.open_point("vm-42.2026-11-24T0300").index("scsi0:0")  # after begin_point
        result = backup_disk(pending, "scsi0:0", source, previous=previous, changed_areas=cbt_areas)
        pending.commit({"vm": "vm-42", "change_id": "..."})
    index = store.open_point("vm-42.2026-11-25T0300").index("scsi0:0")
    restore_disk(store, index, "/tmp/disk.raw")     # or DiskReader(store, index) for dissect
    verify_point(store, "vm-42.2026-11-25T0300").ok

The long-term tier (`remote.py`): the same chunks and indexes in a `Backend` (Azure Blob or a
directory, `blobs.py`), optionally encrypted (`sealing.py`), filled by `replicate_point`, read back
through `TieredStore` (local first, then the vault), garbage-collected beside running backups by
`gc.py`, and moved to cheaper access tiers by `tiers.apply_tiering`.
"""

from __future__ import annotations

from .backup import backup_disk, chunks_to_read
from .blobs import ARCHIVE, COLD, COOL, HOT, Backend, BackendError, BlobArchived, BlobInfo, BlobNotFound
from .errors import (
    Cancelled,
    ChunkCorrupt,
    ChunkError,
    ChunkMissing,
    ChunkQuarantined,
    CorruptIndex,
    CorruptPoint,
    PointExists,
    PointInUse,
    PointNotFound,
    SourceError,
    StoreError,
    StoreFull,
)
from .format import CHUNK_SIZE, DiskIndex, Manifest, ManifestDisk
from .gc import GcReport, collect_local, collect_vault
from .leases import VaultBusy
from .monitor import Monitor
from .pending import BackupStats, DiskBackup, PendingPoint
from .reader import DiskReader, RestoreStats, restore_disk
from .remote import RemotePoint, RemoteVault, VaultKeyError
from .repair import ChunkNote, RepairReport, repair_chunks
from .replicate import ReplicationStats, UploadLimits, replicate_point
from .sealing import Sealer, SealError, generate_key, parse_key
from .source import FileSource, Source
from .store import Point, Store
from .tiers import ChunkRepair, NeedsRehydration, TieredStore, TieringReport, apply_tiering, check_readable
from .verify import ChunkProblem, DiskVerify, VerifyReport, verify_point

__all__ = [
    "ARCHIVE",
    "COLD",
    "COOL",
    "HOT",
    "Backend",
    "BackendError",
    "BlobArchived",
    "BlobInfo",
    "BlobNotFound",
    "ChunkNote",
    "ChunkQuarantined",
    "ChunkRepair",
    "GcReport",
    "Manifest",
    "ManifestDisk",
    "Monitor",
    "NeedsRehydration",
    "PointInUse",
    "RemotePoint",
    "RemoteVault",
    "RepairReport",
    "ReplicationStats",
    "SealError",
    "Sealer",
    "TieredStore",
    "TieringReport",
    "UploadLimits",
    "VaultBusy",
    "VaultKeyError",
    "apply_tiering",
    "collect_local",
    "collect_vault",
    "check_readable",
    "generate_key",
    "parse_key",
    "repair_chunks",
    "replicate_point",
    "CHUNK_SIZE",
    "BackupStats",
    "Cancelled",
    "ChunkCorrupt",
    "ChunkError",
    "ChunkMissing",
    "ChunkProblem",
    "CorruptIndex",
    "CorruptPoint",
    "DiskBackup",
    "DiskIndex",
    "DiskReader",
    "DiskVerify",
    "FileSource",
    "PendingPoint",
    "Point",
    "PointExists",
    "PointNotFound",
    "RestoreStats",
    "Source",
    "SourceError",
    "Store",
    "StoreError",
    "StoreFull",
    "VerifyReport",
    "backup_disk",
    "chunks_to_read",
    "restore_disk",
    "verify_point",
]
