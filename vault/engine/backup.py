"""Back up one disk image into a pending recovery point.

Work is split per 4 MiB chunk: read, zero check, SHA-256, "do we have it?", zstd, write. A pool of
threads (one per core) runs whole chunks, because every slow step (pread, hashlib, zstandard,
os.writev) releases the GIL; each thread reuses its own 4 MiB buffer, since a fresh 4 MiB allocation
per chunk costs page faults on every byte. The calling thread only schedules chunks, collects their
digests in order and runs the caller's callbacks, which may touch thread-bound things (a Django
database connection) and so must not run in the pool.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .format import CHUNK_SIZE, DIGEST_SIZE, ZERO, ZERO_DIGEST, DiskIndex, chunk_count, encode_chunk
from .monitor import UNWATCHED, Monitor
from .pending import BackupStats, DiskBackup, PendingPoint
from .source import Source, read_exact

_ZERO, _REUSED, _NEW = 0, 1, 2


def backup_disk(
    point: PendingPoint,
    disk_key: str,
    source: Source,
    *,
    previous: DiskIndex | None = None,
    changed_areas: Iterable[tuple[int, int]] | None = None,
    monitor: Monitor = UNWATCHED,
    threads: int | None = None,
) -> DiskBackup:
    """Read `source` into `point` as disk `disk_key`; returns its index and statistics. The one way
    to put a disk into a pending point.

    previous: the same disk's index in the last good point. Its digests count as "already stored"
        without a look at the disk, and with `changed_areas` it enables the CBT path. Pass its point
        as begin_point(base=...): a base point cannot be deleted while the backup runs, so the
        chunks it names stay marked for any garbage collection meanwhile.
    changed_areas: (offset, length) pairs that changed since `previous` (vSphere changed block
        tracking, queried with the change id of that point). Only chunks overlapping one are read;
        the others take the previous digest. A disk that grew or shrank has its new tail read too.
        Without `previous` they are the areas in use (changed block tracking asked with change id
        "*", for a first backup): only chunks overlapping one are read, the others are zero chunks.
    monitor: progress gets the bytes of this disk done so far, as chunks complete, and at the end;
        should_cancel is asked before each chunk read (True raises Cancelled).
    threads: the worker pool's size (default: one per core).
    Any exception (Cancelled, StoreFull, a source error) aborts the whole pending point, so a
    failed backup never leaves anything visible, even without a `with` block.
    """
    point.start_disk(disk_key)
    try:
        result = _DiskJob(point, disk_key, source, previous, changed_areas, threads or os.cpu_count() or 1).run(monitor)
    except BaseException:
        point.abort()
        raise
    point.record_disk(result)
    return result


def chunks_to_read(size: int, previous: DiskIndex, changed_areas: Iterable[tuple[int, int]]) -> bytearray:
    """One flag per chunk: 1 = read it. Besides the changed areas, any chunk whose extent differs from
    the previous image's (the disk grew or shrank) is read, since CBT says nothing about it."""
    n = chunk_count(size)
    flags = bytearray(n)
    if size != previous.image_size or previous.chunk_size != CHUNK_SIZE:
        same = min(size, previous.image_size) // CHUNK_SIZE if previous.chunk_size == CHUNK_SIZE else 0
        flags[same:] = b"\x01" * (n - same)
    return _flag_areas(flags, size, changed_areas)


def chunks_in_use(size: int, areas_in_use: Iterable[tuple[int, int]]) -> bytearray:
    """One flag per chunk: 1 = it overlaps an area in use and is read; the others are zeros."""
    return _flag_areas(bytearray(chunk_count(size)), size, areas_in_use)


def _flag_areas(flags: bytearray, size: int, changed_areas: Iterable[tuple[int, int]]) -> bytearray:
    n = len(flags)
    for offset, length in changed_areas:
        if offset < 0 or length < 0:
            raise ValueError(f"invalid changed area ({offset}, {length})")
        if length == 0 or offset >= size:
            continue
        first, last = offset // CHUNK_SIZE, min(n - 1, (offset + length - 1) // CHUNK_SIZE)
        flags[first : last + 1] = b"\x01" * (last + 1 - first)
    return flags


class _DiskJob:
    def __init__(
        self,
        point: PendingPoint,
        disk_key: str,
        source: Source,
        previous: DiskIndex | None,
        changed_areas: Iterable[tuple[int, int]] | None,
        threads: int,
    ) -> None:
        self.point = point
        self.source = source
        self.size = int(source.size)
        self.previous = previous if previous is not None and previous.chunk_size == CHUNK_SIZE else None
        self.must_read: bytearray | None = None
        if changed_areas is not None and self.previous is not None:
            self.must_read = chunks_to_read(self.size, self.previous, changed_areas)
        elif changed_areas is not None and previous is None:  # not when previous had another chunk size
            self.must_read = chunks_in_use(self.size, changed_areas)
        cbt = self.must_read is not None
        # Chunks found corrupt and not yet stored again: whatever an earlier index says, their bytes
        # must be read and stored anew (this is how the next backup repairs them).
        self.bad = point.store.bad_chunks()
        # The previous point's chunks are known to be stored: a set lookup instead of a stat per chunk.
        self.known = self.previous.referenced() - self.bad if self.previous is not None else set()
        if self.must_read is not None and self.previous is not None and self.bad:
            self._read_bad_chunks(self.must_read)
        self.threads = max(1, threads)
        self.stats = BackupStats(disk_key=disk_key, path="cbt" if cbt else "full", logical_bytes=self.size)
        self._local = threading.local()

    def _read_bad_chunks(self, must_read: bytearray) -> None:
        """CBT says nothing changed there, but the previous digest names a quarantined chunk: read it."""
        assert self.previous is not None
        digests = self.previous.digests
        for i in range(min(len(must_read), len(self.previous))):
            if not must_read[i] and digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE] in self.bad:
                must_read[i] = 1

    def run(self, monitor: Monitor) -> DiskBackup:
        started = time.perf_counter()
        n = chunk_count(self.size)
        self.stats.chunks_total = n
        self.digests = bytearray(n * DIGEST_SIZE)  # zero-filled: "all-zero chunk" until told otherwise
        done = 0
        pending: set[Future[tuple[int, int, bytes, int]]] = set()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vault-backup")
        try:
            for i in range(n):
                offset = i * CHUNK_SIZE
                length = min(CHUNK_SIZE, self.size - offset)
                if self.must_read is not None and not self.must_read[i]:
                    done += length
                    self._reuse_previous(i)
                    continue
                monitor.stop_if_cancelled(f"backup of disk {self.stats.disk_key} cancelled at byte {offset}")
                if len(pending) >= 2 * self.threads:  # keep the pool busy, but bound what is queued
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    done += self._collect(finished)
                    monitor.report(done)
                pending.add(pool.submit(self._chunk, i, offset, length))
                self.stats.bytes_read += length
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                done += self._collect(finished)
                monitor.report(done)
        finally:
            # On an error, queued chunks are dropped and running ones finish (at most one per thread)
            # before the caller aborts the point and deletes the staging directory under them.
            pool.shutdown(wait=True, cancel_futures=True)
        monitor.report(self.size)
        self.stats.seconds = time.perf_counter() - started
        index = DiskIndex(self.size, CHUNK_SIZE, bytes(self.digests))
        return DiskBackup(self.stats.disk_key, index, self.stats)

    def _reuse_previous(self, i: int) -> None:
        """Chunk i is not read: the previous point's chunk, or with no previous point a zero chunk."""
        if self.previous is None:
            self.stats.chunks_zero += 1
            return
        digest = self.previous.digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
        if digest == ZERO_DIGEST:
            self.stats.chunks_zero += 1
        else:
            self.digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE] = digest
            self.stats.chunks_reused += 1

    def _collect(self, finished: set[Future[tuple[int, int, bytes, int]]]) -> int:
        done = 0
        for future in finished:
            i, kind, digest, stored = future.result()  # re-raises a worker's error here
            done += min(CHUNK_SIZE, self.size - i * CHUNK_SIZE)
            if kind == _ZERO:
                self.stats.chunks_zero += 1
                continue
            self.digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE] = digest
            if kind == _NEW:
                self.stats.chunks_new += 1
                self.stats.bytes_stored_new += stored
                if digest in self.bad:
                    self.stats.chunks_repaired += 1
            else:
                self.stats.chunks_reused += 1
        return done

    def _buffer(self) -> bytearray:
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = bytearray(CHUNK_SIZE)
        return buf

    def _chunk(self, i: int, offset: int, length: int) -> tuple[int, int, bytes, int]:
        """Runs in the pool: one chunk from source to staging."""
        buf = self._buffer()
        view = memoryview(buf)[:length]
        read_exact(self.source, offset, view)
        # bytearray == bytes is a memcmp (~30 GB/s); startswith also takes a memoryview without a copy.
        if buf == ZERO if length == CHUNK_SIZE else ZERO.startswith(view):
            return i, _ZERO, ZERO_DIGEST, 0
        digest = hashlib.sha256(view).digest()
        if digest in self.known or not self.point.claim(digest) or self.point.found_in_store(digest):
            return i, _REUSED, digest, 0
        return i, _NEW, digest, self.point.stage_chunk(digest, encode_chunk(view))
