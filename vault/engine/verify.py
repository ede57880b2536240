"""Check a recovery point end to end: every chunk it references is read, decompressed and re-hashed.

A chunk that fails is quarantined by the read itself (`Store.read_chunk`, `RemoteVault.read_chunk`),
so the next backup stores it again; a later verify reports it as corrupt (quarantined) until then."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import ChunkCorrupt, ChunkError, ChunkMissing, CorruptPoint
from .format import DiskIndex
from .parallel import bounded_map
from .store import Store


@dataclass(frozen=True)
class ChunkProblem:
    disk_key: str
    offset: int  # where in the image the damaged chunk belongs
    length: int
    digest: str  # hex
    reason: str  # "missing" or "corrupt"
    detail: str

    def __str__(self) -> str:
        return f"disk {self.disk_key} at byte {self.offset} (+{self.length}): chunk {self.digest} {self.detail}"


@dataclass
class DiskVerify:
    disk_key: str
    chunks: int = 0  # chunks in the image
    zero_chunks: int = 0
    unique_checked: int = 0  # stored chunks read (each digest once)
    index_error: str | None = None
    problems: list[ChunkProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.index_error is None and not self.problems


@dataclass
class VerifyReport:
    point_id: str
    disks: dict[str, DiskVerify]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.disks.values())

    @property
    def problems(self) -> list[ChunkProblem]:
        return [p for d in self.disks.values() for p in d.problems]

    def summary(self) -> str:
        if self.ok:
            return f"recovery point {self.point_id}: all {len(self.disks)} disks verified"
        lines = [f"recovery point {self.point_id} is damaged:"]
        for disk in self.disks.values():
            if disk.index_error:
                lines.append(f"  disk {disk.disk_key}: {disk.index_error}")
            lines.extend(f"  {p}" for p in disk.problems)
        return "\n".join(lines)


def verify_point(
    store: Store, point_id: str, *, threads: int | None = None, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Never raises for damage (that is what the report is for); PointNotFound/CorruptPoint only when
    the point itself cannot be opened. `progress` gets the number of chunks checked so far."""
    started = time.perf_counter()
    point = store.open_point(point_id)
    report = VerifyReport(point_id, {})
    # digest -> (length, [(disk, offset)]): a chunk shared by disks (or repeated) is read once.
    wanted: dict[bytes, tuple[int, list[tuple[DiskVerify, int]]]] = {}
    for key in point.disk_keys:
        disk = report.disks[key] = DiskVerify(key)
        try:
            index = point.index(key)
        except CorruptPoint as err:
            disk.index_error = str(err)
            continue
        _collect(index, disk, wanted)

    def check(item: tuple[bytes, int]) -> tuple[bytes, str, str] | None:
        digest, length = item
        try:
            store.read_chunk(digest, length, verify=True)
        except ChunkMissing:
            return digest, "missing", "is missing"
        except ChunkCorrupt as err:
            return digest, "corrupt", str(err).removeprefix(f"chunk {digest.hex()} ")
        except (ChunkError, OSError) as err:
            return digest, "corrupt", f"cannot be read: {err}"
        return None

    workers = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="vault-verify") as pool:
        items = ((digest, length) for digest, (length, _refs) in wanted.items())
        for done, result in enumerate(bounded_map(pool, check, items, 4 * workers), 1):
            if progress is not None:
                progress(done)
            if result is None:
                continue
            digest, reason, detail = result
            length, refs = wanted[digest]
            for disk, offset in refs:
                disk.problems.append(ChunkProblem(disk.disk_key, offset, length, digest.hex(), reason, detail))
    for disk in report.disks.values():
        disk.problems.sort(key=lambda p: p.offset)
    report.seconds = time.perf_counter() - started
    return report


def _collect(index: DiskIndex, disk: DiskVerify, wanted: dict[bytes, tuple[int, list[tuple[DiskVerify, int]]]]) -> None:
    disk.chunks = len(index)
    seen: set[bytes] = set()
    for i in range(len(index)):
        digest = index.digest(i)
        if digest is None:
            disk.zero_chunks += 1
            continue
        offset, length = index.extent(i)
        entry = wanted.setdefault(digest, (length, []))
        entry[1].append((disk, offset))
        seen.add(digest)
    disk.unique_checked = len(seen)
