"""FAT12/16/32 through dissect.fat: long names, case-insensitive lookups, cluster chains read with a bound."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, BinaryIO

from dissect.fat.fat import FATFS

from .base import Entry, FileSystem, aware_utc, read_safely
from .errors import DamagedFileSystem
from .paging import Listed
from .paths import join_path


class FatFileSystem(FileSystem):
    """FAT12/16/32 through dissect.fat; nodes are DirectoryEntries. Long names, case-insensitive."""

    def __init__(self, stream: BinaryIO) -> None:
        self._fs = FATFS(stream)
        self.fs_type = self._fs.type.name.lower()  # "fat12", "fat16", "fat32"
        self.label = self._volume_label()

    def _volume_label(self) -> str | None:
        # Windows renames a volume in the root folder's volume-id entry only; the boot sector's
        # copy keeps the label given at format time.
        for entry in self._fs.root.iterdir():
            if entry.is_volume_id() and not entry.is_directory():
                return bytes(entry.dirent.DIR_Name).decode(self._fs.encoding).rstrip() or None
        label = self._fs.volume_label.strip()
        return None if label in ("", "NO NAME") else label

    def _root_node(self) -> Any:
        return self._fs.root

    def _is_dir(self, node: Any) -> bool:
        return node.is_directory()

    def _children(self, folder: Any) -> Iterator[tuple[str, Any]]:
        self._guard_chain(folder)
        for child in folder.iterdir():
            if child.is_volume_id() or child.name in (".", "..") or child.dirent.DIR_Name[0] == 0xE5:
                continue  # the label, the self/parent links, and long names of deleted entries
            yield _fat_name(child), child

    def _lookup(self, folder: Any, name: str) -> tuple[str, Any] | None:
        upper = name.upper()
        candidate = None
        for real, child in self._children(folder):
            if real == name:
                return real, child
            if candidate is None and upper in (real.upper(), child.short_name.upper()):
                candidate = real, child
        return candidate

    def _list(self, folder_path: str, folder: Any) -> Iterator[Entry]:
        for name, child in self._children(folder):
            yield self._entry(join_path(folder_path, name), name, child)

    def _names_listed(self, folder_path: str, folder: Any) -> Iterator[Listed]:
        for name, child in self._children(folder):  # a FAT directory entry holds all its metadata
            path = join_path(folder_path, name)
            yield Listed(name, child.is_directory(), functools.partial(self._entry, path, name, child))

    def _entry(self, path: str, name: str, node: Any) -> Entry:
        if node is self._fs.root:
            return Entry(path="/", name="", is_dir=True, size=0, modified=None, created=None, file_id=node.cluster)
        dirent = node.dirent
        is_dir = node.is_directory()
        created = read_safely(lambda: node.ctime) if dirent.DIR_CrtDate else None
        return Entry(
            path=path,
            name=name,
            is_dir=is_dir,
            size=0 if is_dir else dirent.DIR_FileSize,  # a folder's size would walk its cluster chain
            modified=aware_utc(read_safely(lambda: node.mtime)),
            created=aware_utc(created),
            hidden=node.is_hidden(),
            file_id=node.cluster or None,  # empty files have no cluster
        )

    def _not_a_file(self, node: Any) -> str:
        return "a folder" if node.is_directory() else ""

    def _open(self, node: Any) -> BinaryIO:
        self._guard_chain(node)
        return node.open()

    def _guard_chain(self, node: Any) -> None:
        """Give dissect the node's cluster runs, read with a bound.

        dissect follows a cluster chain until its end mark, so a damaged FAT whose chain loops
        would never return; a chain can have no more links than the FAT has entries.
        """
        cluster = node.cluster
        if node._runlist is not None or not cluster:
            return  # already known, or FAT12/16's fixed root folder, or an empty file
        fat = self._fs.fat
        runs: list[tuple[int, int]] = []
        for count, link in enumerate(fat.chain(cluster)):
            if count >= fat.entry_count:
                raise DamagedFileSystem(f"the FAT cluster chain from cluster {cluster} loops")
            if runs and link - 2 == runs[-1][0] + runs[-1][1]:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)  # clusters 0 and 1 are reserved: runs count from 2
            else:
                runs.append((link - 2, 1))
        node._runlist = runs


# Windows NT stores names like "alice" or "hosts.txt" as 8.3 names without a long name, and marks
# the lower-case parts in DIR_NTRes; dissect ignores those bits and would show "ALICE".
FAT_LOWER_BASE = 0x08
FAT_LOWER_EXT = 0x10


def _fat_name(entry: Any) -> str:
    if entry.ldirents:
        return entry.name
    flags = entry.dirent.DIR_NTRes
    base, dot, ext = entry.short_name.partition(".")
    if flags & FAT_LOWER_BASE:
        base = base.lower()
    if flags & FAT_LOWER_EXT:
        ext = ext.lower()
    return base + dot + ext
