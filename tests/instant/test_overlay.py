"""The overlay of a served disk: partial block writes keep their neighbours, a crash before a sync
loses unsynced writes but never leaves a bit naming data that is not there, an overlay of another
disk is refused, and a full overlay file system (a 1 MiB tmpfs) fails the write with ENOSPC through
the mount while everything written before stays readable, also after a remount."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from instant.view.overlay import BLOCK, Overlay, OverlayError
from tests.instant.conftest import assert_chunks_hash_to_their_names, sha256, start_serving, store_state

SIZE = 64 * BLOCK + 100  # a last, short block too


def base_bytes() -> bytes:
    return bytes((i * 7) % 251 for i in range(SIZE))


def overlay(tmp_path: Path) -> Overlay:
    base = base_bytes()
    return Overlay(tmp_path, "disk", SIZE, lambda offset, length: base[offset : offset + length])


def test_it_reads_the_base_until_written_and_keeps_a_partial_blocks_neighbours(tmp_path: Path) -> None:
    disk = overlay(tmp_path)
    assert disk.read(0, SIZE) == base_bytes()
    disk.write(BLOCK * 3 + 10, b"x" * (2 * BLOCK))  # the end of block 3, all of block 4, the start of 5
    disk.write(SIZE - 50, b"y" * 50)  # inside the short last block
    expected = bytearray(base_bytes())
    expected[BLOCK * 3 + 10 : BLOCK * 5 + 10] = b"x" * (2 * BLOCK)
    expected[SIZE - 50 :] = b"y" * 50
    assert disk.read(0, SIZE) == bytes(expected)
    assert disk.read(SIZE - 10, 100) == b"y" * 10  # reads stop at the disk's end
    assert disk.written_blocks() == 4
    with pytest.raises(OSError) as grown:
        disk.write(SIZE - 1, b"zz")
    assert grown.value.errno == errno.EFBIG


def test_a_crash_before_a_sync_loses_the_write_but_never_the_consistency(tmp_path: Path) -> None:
    disk = overlay(tmp_path)
    disk.write(BLOCK * 8, b"a" * BLOCK)
    disk.sync()
    disk.write(BLOCK * 9, b"b" * BLOCK)  # its data is in the data file, its bit only in memory
    # A crash now: the process dies without syncing; the next one opens what is on disk.
    after_crash = overlay(tmp_path)
    assert after_crash.read(BLOCK * 8, BLOCK) == b"a" * BLOCK
    assert after_crash.read(BLOCK * 9, BLOCK) == base_bytes()[BLOCK * 9 : BLOCK * 10]
    assert after_crash.written_blocks() == 1


def test_an_overlay_of_another_disk_is_refused(tmp_path: Path) -> None:
    overlay(tmp_path).close()
    with pytest.raises(OverlayError, match="is not the overlay of this disk"):
        Overlay(tmp_path, "disk", SIZE + BLOCK, lambda offset, length: bytes(length))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs for the overlay (we are root; the sandbox allows it)."""
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def write_until_full(flat: Path) -> tuple[list[tuple[int, bytes]], OSError]:
    """Write 64 KiB pieces into the disk until the overlay's file system is full: the pieces that
    were written and the error of the one that was not."""
    written: list[tuple[int, bytes]] = []
    fd = os.open(flat, os.O_WRONLY)
    try:
        for offset in range(0, 8 << 20, 64 << 10):
            piece = os.urandom(64 << 10)
            try:
                n = os.pwrite(fd, piece, offset)
            except OSError as exc:
                os.fsync(fd)
                return written, exc
            written.append((offset, piece[:n]))  # a short write: the next one fails
    finally:
        os.close(fd)
    raise AssertionError("8 MiB fitted in a 1 MiB overlay")


def test_a_full_overlay_fails_the_write_cleanly_and_keeps_what_was_written(
    tmp_path: Path, store_dir: Path, images: dict[str, Path], small_fs: Path
) -> None:
    before = store_state(store_dir)
    mount, overlay_dir = tmp_path / "mnt", small_fs / "overlay"
    served = start_serving(store_dir, mount, overlay_dir)
    try:
        written, error = write_until_full(served.flat("win-01"))
        assert error.errno == errno.ENOSPC
        assert written  # some fitted before it filled up
        expected = bytearray(images["2000"].read_bytes())
        for offset, piece in written:
            expected[offset : offset + len(piece)] = piece
        wanted = hashlib.sha256(expected).hexdigest()  # the failed write left no trace
        assert sha256(served.flat("win-01")) == wanted  # still served
        served.stop()
        served = start_serving(store_dir, mount, overlay_dir)
        assert sha256(served.flat("win-01")) == wanted  # and so after a remount
        assert sha256(served.flat("win-01_1")) == sha256(images["2001"])
    finally:
        if served.process.poll() is None:
            served.stop()
    assert store_state(store_dir) == before
    assert_chunks_hash_to_their_names(store_dir)
