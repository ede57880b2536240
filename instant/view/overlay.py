"""A sparse per-disk overlay: redirect-on-write at 4 KiB granularity over a read-only base disk.

Two files per disk in the overlay directory:

    NAME.data   a sparse file as large as the disk; a written block lives at its own offset
    NAME.map    a header page, then one bit per 4 KiB block: set = the block's bytes are in .data

A bit only ever goes from 0 to 1, and it reaches the disk only after the block's data has: `sync`
fdatasyncs .data first, then writes the changed bitmap pages and fdatasyncs .map. So after a crash
every set bit names durable data and every clear bit reads the base, whatever subset of the pending
bits made it: the overlay is always consistent (writes not yet synced may be lost, as from a disk's
cache, which is what a guest's flush is for). The bitmap file is allocated in full when the overlay
is created, so marking a block never needs space; only new data blocks do, and when the overlay's
file system is full the write fails with ENOSPC before any bit is set.

The base is only ever read: writes never reach the chunk store.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

BLOCK = 4096
PAGE = 4096  # the bitmap starts one page in, so the header and the bits never share a page write
MAGIC = b"VMBOVL1\n"
_HEADER = struct.Struct("<8sIQ")  # magic, block size, disk size

# Reads the base disk: (offset, length) -> exactly `length` bytes (zeros past its end are the caller's).
BaseRead = Callable[[int, int], bytes]


class OverlayError(Exception):
    """An overlay file that does not belong to this disk (another size or block size) or is damaged."""


class Overlay:
    """The written blocks of one disk. Thread-safe: writes and syncs take the overlay's lock; reads
    look at the in-memory bitmap, whose bits are set only after the block's data is written."""

    def __init__(self, directory: Path, name: str, size: int, base: BaseRead) -> None:
        self.size = size
        self.blocks = -(-size // BLOCK)
        self._base = base
        self._lock = threading.Lock()
        self._dirty_pages: set[int] = set()  # bitmap pages with bits set since the last sync
        self.data_path = directory / f"{name}.data"
        self.map_path = directory / f"{name}.map"
        if not self.map_path.exists():
            _create(self.data_path, self.map_path, size)
        self._data = os.open(self.data_path, os.O_RDWR)
        self._map = os.open(self.map_path, os.O_RDWR)
        self._bits = self._load_bits()

    def _load_bits(self) -> bytearray:
        header = os.pread(self._map, _HEADER.size, 0)
        if len(header) != _HEADER.size:
            raise OverlayError(f"{self.map_path} is truncated")
        magic, block, size = _HEADER.unpack(header)
        if magic != MAGIC or block != BLOCK or size != self.size:
            raise OverlayError(f"{self.map_path} is not the overlay of this disk ({size} bytes, {block}-byte blocks)")
        length = _bitmap_bytes(self.size)
        bits = bytearray(os.pread(self._map, length, PAGE))
        if len(bits) != length:
            raise OverlayError(f"{self.map_path} is truncated")
        return bits

    # Reading --------------------------------------------------------------------------------------

    def present(self, block: int) -> bool:
        return bool(self._bits[block >> 3] & (1 << (block & 7)))

    def written_blocks(self) -> int:
        return int.from_bytes(self._bits, "little").bit_count()  # one pass in C, even for a 64 MiB bitmap

    def read(self, offset: int, size: int) -> bytes:
        """The disk's bytes at [offset, offset + size): overlay blocks over the base."""
        size = max(0, min(size, self.size - offset))
        parts = [self._read_run(start, end, mine) for start, end, mine in self._runs(offset, offset + size)]
        return b"".join(parts)

    def _read_run(self, start: int, end: int, mine: bool) -> bytes:
        if not mine:
            return self._base(start, end - start)
        data = os.pread(self._data, end - start, start)
        return data + bytes(end - start - len(data))  # a hole at the sparse file's end reads as zeros

    def _runs(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """[start, end) cut where blocks switch between the overlay and the base."""
        pos = start
        while pos < end:
            mine = self.present(pos // BLOCK)
            stop = pos
            while stop < end and self.present(stop // BLOCK) == mine:
                stop = min(end, (stop // BLOCK + 1) * BLOCK)
            yield pos, stop, mine
            pos = stop

    # Writing --------------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes) -> int:
        """Write `data` at `offset` (within the disk: a disk does not grow). Blocks written for the
        first time are completed from the base first, so a partial block write keeps its neighbours.
        Like write(2), a write that fails part-way (ENOSPC) returns the bytes written before the
        failure and the next one raises; a block is marked only once its bytes are all written."""
        if offset < 0 or offset + len(data) > self.size:
            raise OSError(errno.EFBIG, "write past the end of the disk")
        with self._lock:
            pos, view = offset, memoryview(data)
            while view:
                block = pos // BLOCK
                within = pos - block * BLOCK
                n = min(len(view), BLOCK - within)
                try:
                    if self.present(block) or (within == 0 and n == BLOCK):
                        _pwrite_all(self._data, view[:n], pos)
                    else:
                        self._write_new_block(block, within, view[:n])
                except OSError:
                    if pos == offset:
                        raise
                    return pos - offset
                self._mark(block)
                pos += n
                view = view[n:]
        return len(data)

    def _write_new_block(self, block: int, within: int, piece: memoryview) -> None:
        start = block * BLOCK
        length = min(BLOCK, self.size - start)
        merged = bytearray(self._base(start, length))
        merged[within : within + len(piece)] = piece
        _pwrite_all(self._data, memoryview(merged), start)

    def _mark(self, block: int) -> None:
        if not self.present(block):
            self._bits[block >> 3] |= 1 << (block & 7)
            self._dirty_pages.add((block >> 3) // PAGE)

    def sync(self) -> None:
        """Make every write so far durable: data first, then the bits that name it."""
        with self._lock:
            os.fdatasync(self._data)
            for page in sorted(self._dirty_pages):
                chunk = self._bits[page * PAGE : (page + 1) * PAGE]
                _pwrite_all(self._map, memoryview(chunk), PAGE + page * PAGE)
            if self._dirty_pages:
                os.fdatasync(self._map)
            self._dirty_pages.clear()

    def allocated_bytes(self) -> int:
        """What the overlay takes on its file system (its data file's allocated blocks and the bitmap)."""
        return (os.fstat(self._data).st_blocks + os.fstat(self._map).st_blocks) * 512

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self._data)
            os.close(self._map)


def _bitmap_bytes(size: int) -> int:
    blocks = -(-size // BLOCK)
    return -(-blocks // 8)


def _create(data_path: Path, map_path: Path, size: int) -> None:
    """Create the data file, then the bitmap (allocated in full, zero) under a temporary name renamed
    into place after an fsync: an overlay exists once its .map does, and is then complete."""
    fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    temp = map_path.with_name(map_path.name + ".new")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        header = _HEADER.pack(MAGIC, BLOCK, size)
        _pwrite_all(fd, memoryview(header + bytes(PAGE - len(header))), 0)
        length = _bitmap_bytes(size)
        for start in range(0, length, 1 << 20):  # written, not a hole: marking a block never needs space
            _pwrite_all(fd, memoryview(bytes(min(1 << 20, length - start))), PAGE + start)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, map_path)
    _fsync_dir(map_path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
