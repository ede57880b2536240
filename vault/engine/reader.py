"""Reading disk images back: a seekable file object for browsing, and a fast whole-image restore."""

from __future__ import annotations

import io
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .format import ZERO, DiskIndex
from .fsutil import pwrite_all
from .monitor import UNWATCHED, Monitor
from .parallel import bounded_map

_ZERO_VIEW = memoryview(ZERO)  # slicing a memoryview does not copy; slicing bytes would


class ChunkReader(Protocol):
    """Where an image's chunks come from: the local `Store`, the vault (`RemoteVault`), or both
    (`TieredStore`). Each checks what it returns against the digest when `verify`."""

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview: ...


class Writable(Protocol):
    """What restore_disk writes an image to when not a path: an open file, a pipe, an upload."""

    def write(self, data: memoryview, /) -> int | None: ...


class DiskReader(io.RawIOBase):
    """A read-only, seekable view of a disk image in the store, e.g. for dissect to parse the
    partition table and file systems without restoring the image. Zero chunks cost no I/O; the last
    `cache_chunks` chunks used are kept decoded, because file system parsers re-read metadata near
    what they just read. Not thread-safe (no file object is)."""

    def __init__(self, store: ChunkReader, index: DiskIndex, *, cache_chunks: int = 8, verify: bool = True) -> None:
        super().__init__()
        self._store = store
        self._index = index
        self._pos = 0
        self._verify = verify
        self._cache_size = max(1, cache_chunks)
        self._cache: OrderedDict[int, memoryview] = OrderedDict()

    @property
    def size(self) -> int:
        return self._index.image_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Fills `buffer` as far as the image goes (across chunks), so read(n) is short only at the end."""
        if self.closed:
            raise ValueError("I/O operation on closed DiskReader")
        view = memoryview(buffer).cast("B")
        chunk_size = self._index.chunk_size
        total = 0
        while total < len(view) and self._pos < self.size:
            i, within = divmod(self._pos, chunk_size)
            _offset, length = self._index.extent(i)
            n = min(len(view) - total, length - within)
            data = self._chunk(i, length)
            view[total : total + n] = _ZERO_VIEW[:n] if data is None else data[within : within + n]
            total += n
            self._pos += n
        return total

    def readall(self) -> bytes:
        out = bytearray(max(0, self.size - self._pos))
        n = self.readinto(out)
        return bytes(out[:n])

    def _chunk(self, i: int, length: int) -> memoryview | None:
        digest = self._index.digest(i)
        if digest is None:
            return None
        data = self._cache.get(i)
        if data is not None:
            self._cache.move_to_end(i)
            return data
        data = self._store.read_chunk(digest, length, verify=self._verify)
        self._cache[i] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def close(self) -> None:
        self._cache.clear()
        super().close()


@dataclass(frozen=True)
class RestoreStats:
    image_size: int
    chunks_read: int
    chunks_zero: int
    seconds: float


def restore_disk(
    store: ChunkReader,
    index: DiskIndex,
    dest: str | os.PathLike[str] | Writable,
    *,
    threads: int | None = None,
    monitor: Monitor = UNWATCHED,
    verify: bool = True,
    fsync: bool = False,
) -> RestoreStats:
    """Write the whole image to `dest`.

    A path is created or truncated and written with pwrite from a thread pool; zero chunks become
    holes in a regular file (and are written as zeros to a block device). A file object (pipe,
    upload stream) is written strictly in order. `verify` re-hashes every chunk, so a damaged store
    raises ChunkCorrupt instead of restoring bad data. `monitor` gets the bytes done so far and may
    cancel before each chunk; `fsync` (paths only) makes the image durable before returning. On an
    error `dest` holds a partial image.
    """
    started = time.perf_counter()
    restore = _Restore(store, index, max(1, threads or os.cpu_count() or 1), monitor, verify)
    if isinstance(dest, str | os.PathLike):
        restore.to_path(Path(dest), fsync=fsync)
    else:
        restore.to_stream(dest)
    return RestoreStats(index.image_size, restore.read, restore.zero, time.perf_counter() - started)


class _Restore:
    """One image on its way out, to a path or a stream; counts its chunks as it goes."""

    def __init__(self, store: ChunkReader, index: DiskIndex, threads: int, monitor: Monitor, verify: bool) -> None:
        self.store = store
        self.index = index
        self.threads = threads
        self.monitor = monitor
        self.verify = verify
        self.read = self.zero = 0
        self.skipped = 0  # bytes of zero chunks left as holes

    def _load(self, i: int) -> memoryview:
        """Runs in the pool: the plaintext of chunk `i` (zeros without I/O for a zero chunk)."""
        digest = self.index.digest(i)
        _offset, length = self.index.extent(i)
        return _ZERO_VIEW[:length] if digest is None else self.store.read_chunk(digest, length, verify=self.verify)

    def _chunks(self, where: str, *, skip_zero: bool = False) -> Iterator[int]:
        """The chunks to write, in order, counted; runs in this thread, as bounded_map asks for items.
        Zero chunks are counted but not yielded when `skip_zero` (holes in a sparse file)."""
        for i in range(len(self.index)):
            if self.index.digest(i) is None:
                self.zero += 1
                if skip_zero:
                    self.skipped += self.index.extent(i)[1]
                    continue
            else:
                self.read += 1
            self.monitor.stop_if_cancelled(f"restore{where} cancelled at byte {self.index.extent(i)[0]}")
            yield i

    def to_path(self, path: Path, *, fsync: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sparse = stat.S_ISREG(os.fstat(fd).st_mode)
            if sparse:
                os.ftruncate(fd, self.index.image_size)  # the holes are the zero chunks

            def write(i: int) -> int:  # runs in the pool; writes land anywhere, so order does not matter
                data = self._load(i)
                pwrite_all(fd, data, self.index.extent(i)[0])
                return len(data)

            written = 0
            with ThreadPoolExecutor(self.threads, thread_name_prefix="vault-restore") as pool:
                for length in bounded_map(pool, write, self._chunks(f" to {path}", skip_zero=sparse), 2 * self.threads):
                    written += length
                    self.monitor.report(written + self.skipped)
            if fsync:
                os.fsync(fd)
            self.monitor.report(self.index.image_size)
        finally:
            os.close(fd)

    def to_stream(self, out: Writable) -> None:
        done = 0
        with ThreadPoolExecutor(self.threads, thread_name_prefix="vault-restore") as pool:
            # The window bounds how many decoded chunks wait here for their turn to be written.
            for data in bounded_map(pool, self._load, self._chunks(""), 2 * self.threads):
                done += _write_stream(out, data)
                self.monitor.report(done)
        self.monitor.report(self.index.image_size)


def _write_stream(out: Writable, data: memoryview) -> int:
    written = 0
    while written < len(data):
        n = out.write(data[written:])
        # Buffered files write everything and return the count; a few file-likes return None for that.
        written += len(data) - written if n is None else n
    return written
