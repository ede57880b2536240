"""Reading disk images back: a seekable file object for browsing, and a fast whole-image restore."""

from __future__ import annotations

import io
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import Cancelled
from .format import ZERO, DiskIndex
from .parallel import bounded_map
from .store import Store

_ZERO_VIEW = memoryview(ZERO)  # slicing a memoryview does not copy; slicing bytes would


class DiskReader(io.RawIOBase):
    """A read-only, seekable view of a disk image in the store, e.g. for dissect to parse the
    partition table and file systems without restoring the image. Zero chunks cost no I/O; the last
    `cache_chunks` chunks used are kept decoded, because file system parsers re-read metadata near
    what they just read. Not thread-safe (no file object is)."""

    def __init__(self, store: Store, index: DiskIndex, *, cache_chunks: int = 8, verify: bool = True) -> None:
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
    store: Store,
    index: DiskIndex,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    verify: bool = True,
    fsync: bool = False,
) -> RestoreStats:
    """Write the whole image to `dest`.

    A path is created or truncated and written with pwrite from a thread pool; zero chunks become
    holes in a regular file (and are written as zeros to a block device). A file object (pipe,
    upload stream) is written strictly in order. `verify` re-hashes every chunk, so a damaged store
    raises ChunkCorrupt instead of restoring bad data. On an error `dest` holds a partial image.
    """
    started = time.perf_counter()
    threads = max(1, threads or os.cpu_count() or 1)
    if isinstance(dest, str | os.PathLike):
        zero, read = _restore_to_path(store, index, Path(dest), threads, progress, should_cancel, verify, fsync)
    else:
        zero, read = _restore_to_stream(store, index, dest, threads, progress, should_cancel, verify)
    return RestoreStats(index.image_size, read, zero, time.perf_counter() - started)


def _restore_to_path(
    store: Store,
    index: DiskIndex,
    path: Path,
    threads: int,
    progress: Callable[[int], None] | None,
    should_cancel: Callable[[], bool] | None,
    verify: bool,
    fsync: bool,
) -> tuple[int, int]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        sparse = stat.S_ISREG(os.fstat(fd).st_mode)
        if sparse:
            os.ftruncate(fd, index.image_size)  # the holes are the zero chunks

        def restore_chunk(i: int) -> int:
            offset, length = index.extent(i)
            digest = index.digest(i)
            data = _ZERO_VIEW[:length] if digest is None else store.read_chunk(digest, length, verify=verify)
            _pwrite_all(fd, data, offset)
            return length

        zero = read = skipped = 0

        def chunks_to_write() -> Iterator[int]:  # runs in this thread, as bounded_map asks for items
            nonlocal zero, read, skipped
            for i in range(len(index)):
                if index.digest(i) is None:
                    zero += 1
                    if sparse:
                        skipped += index.extent(i)[1]
                        continue
                else:
                    read += 1
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"restore to {path} cancelled at byte {index.extent(i)[0]}")
                yield i

        written = 0
        with ThreadPoolExecutor(threads, thread_name_prefix="vault-restore") as pool:
            for length in bounded_map(pool, restore_chunk, chunks_to_write(), 2 * threads):
                written += length
                if progress is not None:
                    progress(written + skipped)
        if fsync:
            os.fsync(fd)
        if progress is not None:
            progress(index.image_size)
        return zero, read
    finally:
        os.close(fd)


def _restore_to_stream(
    store: Store,
    index: DiskIndex,
    out: BinaryIO,
    threads: int,
    progress: Callable[[int], None] | None,
    should_cancel: Callable[[], bool] | None,
    verify: bool,
) -> tuple[int, int]:
    def load(i: int) -> memoryview:
        digest = index.digest(i)
        _offset, length = index.extent(i)
        return _ZERO_VIEW[:length] if digest is None else store.read_chunk(digest, length, verify=verify)

    zero = read = 0

    def chunks_in_order() -> Iterator[int]:  # runs in this thread, as bounded_map asks for items
        nonlocal zero, read
        for i in range(len(index)):
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"restore cancelled at byte {index.extent(i)[0]}")
            if index.digest(i) is None:
                zero += 1
            else:
                read += 1
            yield i

    done = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="vault-restore") as pool:
        # The window bounds how many decoded chunks wait here for their turn to be written.
        for data in bounded_map(pool, load, chunks_in_order(), 2 * threads):
            done += _write_stream(out, data)
            if progress is not None:
                progress(done)
    if progress is not None:
        progress(index.image_size)
    return zero, read


def _write_stream(out: BinaryIO, data: memoryview) -> int:
    written = 0
    while written < len(data):
        n = out.write(data[written:])
        # Buffered files write everything and return the count; a few file-likes return None for that.
        written += len(data) - written if n is None else n
    return written


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
