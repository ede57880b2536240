"""Read and hash every chunk a restore is about to write, before anything is changed.

A restore over an existing disk cannot be undone: if it met a bad chunk half-way, a production disk
would be left half-written. So destructive restores read every distinct chunk first (local or vault,
through `TieredStore.read_chunk(verify=True)`), on a small thread pool like `engine.verify_point`,
and only then power anything off. Plain Python: no Django, no vCenter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vault import engine
from vault.engine.parallel import bounded_map

# Reading is mostly I/O (disk or network), and the job shares its machine with backups.
MAX_THREADS = 4


@dataclass(frozen=True)
class UnreadableChunk:
    digest: bytes
    disk_key: int
    offset: int  # where in the disk image the chunk belongs (its first use)
    detail: str  # why it cannot be read, e.g. "fails its SHA-256 check"
    error: Exception

    @property
    def archived(self) -> bool:
        """In the vault's Archive tier: readable again after a rehydration, so not damage."""
        return isinstance(self.error, engine.BlobArchived)


@dataclass(frozen=True)
class _Wanted:
    digest: bytes
    length: int
    disk_key: int
    offset: int


class CheckCancelled(Exception):
    """`should_cancel` returned True; nothing was changed."""


def find_unreadable_chunks(
    source: engine.TieredStore,
    indexes: dict[int, engine.DiskIndex],
    disk_keys: Iterable[int],
    *,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> list[UnreadableChunk]:
    """Every chunk of the disks `disk_keys` that cannot be read intact, in disk then offset order.
    Each distinct digest is read once; zero chunks cost nothing. `progress(done, total)` counts
    distinct chunks. A back-end failure that is not about one chunk (network, permission) raises."""
    wanted = _distinct_chunks(indexes, disk_keys)
    total = len(wanted)
    if progress is not None:
        progress(0, total)

    def read(item: _Wanted) -> UnreadableChunk | None:
        try:
            source.read_chunk(item.digest, item.length, verify=True)
        except (engine.ChunkError, engine.BlobArchived) as err:
            detail = str(err).removeprefix(f"chunk {item.digest.hex()} ")
            return UnreadableChunk(item.digest, item.disk_key, item.offset, detail, err)
        return None

    found: list[UnreadableChunk] = []
    workers = max(1, min(MAX_THREADS, threads or os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="restore-check") as pool:
        for done, result in enumerate(bounded_map(pool, read, wanted, 4 * workers), 1):
            if result is not None:
                found.append(result)
            if progress is not None:
                progress(done, total)
            if should_cancel is not None and should_cancel():
                raise CheckCancelled()
    return sorted(found, key=lambda chunk: (chunk.disk_key, chunk.offset))


def _distinct_chunks(indexes: dict[int, engine.DiskIndex], disk_keys: Iterable[int]) -> list[_Wanted]:
    seen: dict[bytes, _Wanted] = {}
    for key in sorted(disk_keys):
        index = indexes[key]
        for i in range(len(index)):
            digest = index.digest(i)
            if digest is None or digest in seen:
                continue
            offset, length = index.extent(i)
            seen[digest] = _Wanted(digest, length, key, offset)
    return list(seen.values())
