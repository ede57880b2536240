"""XFS (v4 and v5) through dissect.xfs."""

from __future__ import annotations

import stat as stat_mod
from datetime import datetime
from typing import Any, BinaryIO

from dissect.xfs import XFS

from .inode import InodeFileSystem


class XfsFileSystem(InodeFileSystem):
    """XFS (v4 and v5) through dissect.xfs."""

    fs_type = "xfs"

    def __init__(self, stream: BinaryIO) -> None:
        self._fs = XFS(stream)
        if self._fs.root.filetype != stat_mod.S_IFDIR:
            raise ValueError("the root inode is not a folder")
        self.label = self._fs.name or None  # raw, like names: the layout escapes it

    def _uid(self, node: Any) -> int:
        return node.inode.di_uid

    def _created(self, node: Any) -> datetime | None:
        # Creation times exist only in v3 inodes (XFS v5); dissect reads garbage before that.
        return node.crtime if node.inode.di_version >= 3 else None
