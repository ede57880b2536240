"""ext2, ext3 and ext4 through dissect.extfs."""

from __future__ import annotations

import stat as stat_mod
from datetime import datetime
from typing import Any, BinaryIO

from dissect.extfs import ExtFS

from .inode import InodeFileSystem


class ExtFileSystem(InodeFileSystem):
    """ext2, ext3 and ext4 through dissect.extfs."""

    def __init__(self, stream: BinaryIO) -> None:
        self._fs = ExtFS(stream)
        if self._fs.root.filetype != stat_mod.S_IFDIR:
            raise ValueError("the root inode is not a folder")
        self.fs_type = f"ext{self._fs.type}"
        self.label = self._fs.volume_name or None

    def _uid(self, node: Any) -> int:
        return node.inode.i_uid | (node.inode.i_uid_high << 16)

    def _created(self, node: Any) -> datetime | None:
        # dissect reads i_crtime whenever inodes exceed 128 bytes; it is only there when
        # i_extra_isize reaches past it (24 bytes from the end of the 128-byte core).
        if self._fs.sb.s_inode_size <= 128 or node.inode.i_extra_isize < 24:
            return None
        return node.crtime
