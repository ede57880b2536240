"""What ext2/3/4 and XFS share: both are inode file systems with the same dissect API."""

from __future__ import annotations

import functools
import stat as stat_mod
from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from .base import Entry, FileSystem, aware_utc, read_safely
from .paging import Listed
from .paths import join_path


def _uid_owner(uid: int) -> tuple[str, str | None]:
    return f"uid {uid}", "root" if uid == 0 else None


class InodeFileSystem(FileSystem):
    """ext and XFS; nodes are dissect INodes. Names compare exactly, as the kernel does."""

    names_from_bytes = True
    ids_are_addresses = True
    _fs: Any  # dissect's ExtFS or XFS, opened by the subclass

    def _root_node(self) -> Any:
        return self._fs.root

    def _is_dir(self, node: Any) -> bool:
        return node.filetype == stat_mod.S_IFDIR

    def _lookup(self, folder: Any, name: str) -> tuple[str, Any] | None:
        for child in folder.iterdir():
            if child.filename == name and name not in (".", ".."):
                return name, child
        return None

    def _list(self, folder_path: str, folder: Any) -> Iterator[Entry]:
        for child in folder.iterdir():
            name = child.filename
            if not name or name in (".", ".."):
                continue
            yield self._entry(join_path(folder_path, name), name, child)

    def _names_listed(self, folder_path: str, folder: Any) -> Iterator[Listed]:
        # The directory entry's file type (ext4 and XFS v5 keep it) tells a folder without its inode.
        for child in folder.iterdir():
            name = child.filename
            if not name or name in (".", ".."):
                continue
            path = join_path(folder_path, name)
            yield Listed(name, child.filetype == stat_mod.S_IFDIR, functools.partial(self._entry, path, name, child))

    def _entry_by_id(self, path: str, name: str, file_id: int) -> Entry | None:
        return self._entry(path, name, self._fs.get_inode(file_id))

    def _entry(self, path: str, name: str, node: Any) -> Entry:
        kind = node.filetype
        is_dir = kind == stat_mod.S_IFDIR
        is_link = kind == stat_mod.S_IFLNK
        owner, owner_name = _uid_owner(self._uid(node))
        return Entry(
            path=path,
            name=name,
            is_dir=is_dir,
            size=node.size if kind == stat_mod.S_IFREG else 0,
            modified=aware_utc(read_safely(lambda: self._modified(node))),
            created=aware_utc(read_safely(lambda: self._created(node))),
            owner=owner,
            owner_name=owner_name,
            is_symlink=is_link,
            symlink_target=(read_safely(lambda: node.link) or "") if is_link else None,
            hidden=name.startswith("."),
            file_id=node.inum,
        )

    def _not_a_file(self, node: Any) -> str:
        kind = node.filetype
        if kind == stat_mod.S_IFREG:
            return ""
        return {stat_mod.S_IFDIR: "a folder", stat_mod.S_IFLNK: "a symbolic link"}.get(kind, "not a regular file")

    def _open(self, node: Any) -> BinaryIO:
        return node.open()

    def _modified(self, node: Any) -> datetime | None:
        return node.mtime

    @abstractmethod
    def _uid(self, node: Any) -> int: ...

    @abstractmethod
    def _created(self, node: Any) -> datetime | None: ...
