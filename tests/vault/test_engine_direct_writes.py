"""New chunk files are written with O_DIRECT (vault.engine.fsutil.create_direct), exactly, and a file
system that refuses O_DIRECT gets buffered writes instead, for the rest of the store's life."""

from __future__ import annotations

import errno
import os

import pytest

from tests.vault import MIXED_LAYOUT, backup, build_image, restored
from vault.engine import Store, fsutil


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 4 * 1024 * 1024 + 1])
def test_a_direct_write_holds_exactly_its_pieces(tmp_path, size):
    data = os.urandom(size)
    pieces = [b"\x01", memoryview(data)]
    assert fsutil.create_direct(tmp_path / "chunk", pieces) == size + 1
    assert (tmp_path / "chunk").read_bytes() == b"\x01" + data


def test_a_direct_write_never_replaces_a_file(tmp_path):
    (tmp_path / "chunk").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        fsutil.create_direct(tmp_path / "chunk", [b"new"])
    assert (tmp_path / "chunk").read_bytes() == b"old"


def test_a_failed_direct_write_leaves_no_file(tmp_path, monkeypatch):
    def no_space(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", no_space)
    with pytest.raises(OSError, match="No space"):
        fsutil.create_direct(tmp_path / "chunk", [os.urandom(10000)])
    assert not (tmp_path / "chunk").exists()


def test_a_file_system_refusing_o_direct_gets_buffered_chunk_files(tmp_path, monkeypatch):
    real_open = os.open
    refused = []

    def open_without_direct(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:  # what tmpfs before Linux 6.6 and some FUSE file systems answer
            refused.append(path)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_without_direct)
    store = Store(tmp_path / "store")
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    backup(store, "p1", image)
    monkeypatch.undo()
    assert len(refused) == 1 and store.direct_writes is False  # asked once, then remembered
    assert restored(store, "p1") == data
