"""Chunks fetched from the vault, kept on local disk for every server: the read cache instant
recoveries share (each point is served by its own process; their in-memory caches are their own).

A chunk the local store lacks is fetched from the vault once, then read by any recovery (of the same
point, a later point of the VM, or a VM whose chunks dedup with it) from DIR/<digest hex>, in the
local store's chunk file format. A cached file is checked against its digest on every read, so a
damaged or tampered one is dropped and fetched again; files appear by rename, so a reader never sees
half of one. Chunks of the local store are not copied: the page cache already shares those.
`trim` (the supervisor's) keeps it under a size, least recently read out.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

from vault import engine
from vault.engine.format import decode_chunk, encode_chunk


class SharedChunkFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, digest: bytes) -> Path:
        return self.directory / digest.hex()

    def get(self, digest: bytes, length: int) -> memoryview | None:
        """The chunk's plaintext, or None when it is not cached (or was damaged: then it is dropped)."""
        path = self._path(digest)
        try:
            chunk_file = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = decode_chunk(chunk_file, digest, length, verify=True)
        except engine.ChunkCorrupt:
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently read: trimmed last
        return data

    def put(self, digest: bytes, data: memoryview) -> None:
        """Keep the chunk; a full disk only means it is not cached."""
        path = self._path(digest)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            with open(temp, "wb") as f:
                f.writelines(encode_chunk(data))
            os.replace(temp, path)
        except OSError:
            temp.unlink(missing_ok=True)


def trim(directory: Path, max_bytes: int) -> int:
    """Remove the least recently read chunk files until the folder holds at most max_bytes; the bytes
    removed. Half-written files older than an hour (a killed writer's) go too."""
    entries = []
    removed = 0
    stale = time.time() - 3600
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as found:
        for entry in found:
            with contextlib.suppress(OSError):
                st = entry.stat()
                if entry.name.startswith(".") and st.st_mtime < stale:
                    os.unlink(entry.path)
                    continue
                entries.append((st.st_mtime, st.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in entries)
    for _read, size, path in sorted(entries):
        if total - removed <= max_bytes:
            break
        path.unlink(missing_ok=True)
        removed += size
    return removed
