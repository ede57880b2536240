"""Sorted listings of large folders, so a folder of 100,000 files opens as fast as one of 10.

A live page must read every name of a folder to sort them (7 µs a name: 0.7 s at 100,000). The catalog
walk lists every folder of a point anyway; for a folder of at least MIN_ENTRIES it also writes the
sorted (name, file id) listing here in chunks of CHUNK. A page then reads one or two chunks and the
page's own nodes by id (`FileSystem.entries_by_id`). Points never change, so an index never goes
stale; a folder without one (small, FAT, a point not catalogued yet) is listed live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import zstandard

from recovery import filesystems as fs
from recovery.filesystems.paths import split_path
from recovery.models import FolderIndex

MIN_ENTRIES = 2_000
CHUNK = 1_000


def path_key(path: str) -> str:
    return hashlib.sha256(("/" + "/".join(split_path(path))).encode("utf-8", "surrogatepass")).hexdigest()


def encode(entries: Sequence[fs.Entry]) -> bytes:
    # Escaped names are printable (recovery.names): no tab or newline inside one.
    text = "\n".join(f"{'d' if e.is_dir else 'f'}{e.file_id}\t{e.name}" for e in entries)
    return zstandard.ZstdCompressor(level=3).compress(text.encode("utf-8", "surrogatepass"))


def decode(blob: bytes | memoryview) -> list[tuple[str, int]]:
    """(escaped name, file id) of each entry of a chunk, in order."""
    text = zstandard.ZstdDecompressor().decompress(bytes(blob)).decode("utf-8", "surrogatepass")
    listed = []
    for line in text.split("\n"):
        head, _, name = line.partition("\t")
        listed.append((name, int(head[1:])))
    return listed


def record(point_id: UUID, disk_key: int, volume_index: int, filesystem: fs.FileSystem, folder: str,
           entries: Sequence[fs.Entry]) -> int:  # fmt: skip
    """Index `folder` (its sorted entries, as `list_dir` gives them) when it is large; chunks written."""
    if len(entries) < MIN_ENTRIES or not filesystem.ids_are_addresses:
        return 0
    if any(e.file_id is None for e in entries):
        return 0
    key = path_key(folder)
    rows = [
        FolderIndex(
            point_id=point_id,
            disk_key=disk_key,
            volume_index=volume_index,
            path_key=key,
            first=first,
            total=len(entries),
            entries=encode(entries[first : first + CHUNK]),
        )
        for first in range(0, len(entries), CHUNK)
    ]
    FolderIndex.objects.bulk_create(rows, batch_size=20, ignore_conflicts=True)
    return len(rows)


@dataclass(frozen=True)
class IndexedFolder:
    """A folder with an index: its total, and its pages read through the index."""

    point_id: UUID
    disk_key: int
    volume_index: int
    path: str
    total: int

    def page(self, filesystem: fs.FileSystem, offset: int, limit: int) -> fs.Page | None:
        """Entries offset..offset+limit, or None when the file system cannot read them by id."""
        offset = max(0, offset)
        listed = self._listed(offset, limit)
        entries = filesystem.entries_by_id(self.path, listed)
        return None if entries is None else fs.Page(entries, self.total, offset, limit)

    def _listed(self, offset: int, limit: int) -> list[tuple[str, int]]:
        if limit <= 0 or offset >= self.total:
            return []
        start = offset // CHUNK * CHUNK
        chunks = FolderIndex.objects.filter(
            point_id=self.point_id,
            disk_key=self.disk_key,
            volume_index=self.volume_index,
            path_key=path_key(self.path),
            first__gte=start,
            first__lt=offset + limit,
        ).order_by("first")
        listed = [item for blob in chunks.values_list("entries", flat=True) for item in decode(blob)]
        return listed[offset - start : offset - start + limit]


def find(point_id: UUID, disk_key: int, volume_index: int, path: str) -> IndexedFolder | None:
    total = (
        FolderIndex.objects.filter(
            point_id=point_id, disk_key=disk_key, volume_index=volume_index, path_key=path_key(path), first=0
        )
        .values_list("total", flat=True)
        .first()
    )
    return None if total is None else IndexedFolder(point_id, disk_key, volume_index, path, total)
