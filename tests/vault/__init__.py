"""Helpers for the vault engine tests: small deterministic images, a source that counts what is read,
and shortcuts for a one-disk backup. No Django and no database: the engine is tested alone."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import threading
from pathlib import Path

from vault.engine import CHUNK_SIZE, DiskBackup, DiskIndex, FileSource, Store, backup_disk, restore_disk

MIB = 1024 * 1024
CS = CHUNK_SIZE
DISK = "scsi0:0"

# A mixed image whose size is not a multiple of the chunk size: zero chunks (aligned and not),
# random data (incompressible), text (compressible), and a short last chunk.
MIXED_LAYOUT = [
    ("zero", CS),  # chunk 0: all zero
    ("random", 3 * MIB),  # chunk 1 mixes random and text
    ("text", 5 * MIB),
    ("zero", 2 * CS),  # chunks 3 and 4 all zero (the region starts mid chunk 2)
    ("random", CS + MIB + 12345),  # a short last chunk
]


def text_bytes(n: int, rng: random.Random) -> bytes:
    words = [rng.randbytes(rng.randint(2, 8)).hex()[: rng.randint(2, 9)] for _ in range(300)]
    out = bytearray()
    while len(out) < n:
        out += (" ".join(rng.choices(words, k=12)) + ".\n").encode()
    return bytes(out[:n])


def build_image(path: Path, layout: list[tuple[str, int]], seed: int = 0) -> bytes:
    data = _image_bytes(tuple(layout), seed)
    path.write_bytes(data)
    return data


@functools.cache
def _image_bytes(layout: tuple[tuple[str, int], ...], seed: int) -> bytes:
    rng = random.Random(seed)
    parts = []
    for kind, length in layout:
        if kind == "zero":
            parts.append(bytes(length))
        elif kind == "random":
            parts.append(rng.randbytes(length))
        else:
            parts.append(text_bytes(length, rng))
    return b"".join(parts)


def overwrite(path: Path, data: bytes, areas: list[tuple[int, int]], seed: int = 1) -> bytes:
    """Overwrite `areas` of the image with random bytes; returns the new contents."""
    rng = random.Random(seed)
    buf = bytearray(data)
    for offset, length in areas:
        buf[offset : offset + length] = rng.randbytes(length)
    path.write_bytes(bytes(buf))
    return bytes(buf)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CountingSource:
    """Wraps a FileSource and records every read, to prove what the CBT path touches."""

    def __init__(self, path: Path) -> None:
        self._inner = FileSource(path)
        self.size = self._inner.size
        self.bytes_read = 0
        self.offsets: list[int] = []
        self._lock = threading.Lock()

    def readinto(self, offset: int, buffer: memoryview) -> int:
        n = self._inner.readinto(offset, buffer)
        with self._lock:
            self.bytes_read += n
            self.offsets.append(offset)
        return n

    def close(self) -> None:
        self._inner.close()


def backup(store: Store, point_id: str, image: Path, **options) -> DiskBackup:
    with store.begin_point(point_id) as pending, FileSource(image) as source:
        result = backup_disk(pending, DISK, source, **options)
        pending.commit({"vm": "test-vm"})
    return result


def index_of(store: Store, point_id: str) -> DiskIndex:
    return store.open_point(point_id).index(DISK)


def restored(store: Store, point_id: str) -> bytes:
    out = io.BytesIO()
    restore_disk(store, index_of(store, point_id), out, threads=2)
    return out.getvalue()


def chunk_files(store: Store) -> set[str]:
    return {name for _dir, _sub, files in os.walk(store.chunks_dir) for name in files}


def assert_chunks_trustworthy(store: Store) -> None:
    """Every file under chunks/ is a whole chunk whose content hashes to its name."""
    from vault.engine.format import decode_chunk

    for dirpath, _sub, files in os.walk(store.chunks_dir):
        for name in files:
            assert len(name) == 64 and Path(dirpath).name == name[:4], f"stray file {dirpath}/{name}"
            payload = Path(dirpath, name).read_bytes()
            digest = bytes.fromhex(name)
            # the plaintext length is unknown here: decode without the length check, then hash
            data = decode_chunk(payload, digest, _plain_length(payload), verify=True)
            assert hashlib.sha256(data).hexdigest() == name


def _plain_length(payload: bytes) -> int:
    import zstandard

    if payload[:1] == b"\x00":
        return len(payload) - 1
    return zstandard.frame_content_size(payload[1:])
