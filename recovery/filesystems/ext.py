"""ext2, ext3 and ext4 through dissect.extfs."""

from __future__ import annotations

import stat as stat_mod
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from dissect.extfs import ExtFS

from .inode import InodeFileSystem

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExtFileSystem(InodeFileSystem):
    """ext2, ext3 and ext4 through dissect.extfs."""

    def __init__(self, stream: BinaryIO) -> None:
        self._fs = ExtFS(stream)
        if self._fs.root.filetype != stat_mod.S_IFDIR:
            raise ValueError("the root inode is not a folder")
        self.fs_type = f"ext{self._fs.type}"
        self.label = self._fs.volume_name or None  # raw, like names: the layout escapes it

    def _uid(self, node: Any) -> int:
        return node.inode.i_uid | (node.inode.i_uid_high << 16)

    def _created(self, node: Any) -> datetime | None:
        # dissect reads i_crtime whenever inodes exceed 128 bytes; it is only there when
        # i_extra_isize reaches past it (24 bytes from the end of the 128-byte core).
        if self._fs.sb.s_inode_size <= 128 or node.inode.i_extra_isize < 24:
            return None
        return _ext_time(node.inode.i_crtime, node.inode.i_crtime_extra)

    def _modified(self, node: Any) -> datetime | None:
        extra = node.inode.i_mtime_extra if self._fs.sb.s_inode_size > 128 else 0
        return _ext_time(node.inode.i_mtime, extra)


def _ext_time(seconds: int, extra: int) -> datetime:
    """An ext4 time as the kernel reads it: signed 32-bit seconds, plus 2 epoch bits and nanoseconds.

    dissect reads the seconds unsigned and ORs the epoch bits in, so dates before 1970 or after
    2038 (a file from 1960, one dated 2230) come out decades wrong.
    """
    signed = seconds - (1 << 32) if seconds & 0x80000000 else seconds
    total = signed + ((extra & 0b11) << 32)
    return _UNIX_EPOCH + timedelta(seconds=total, microseconds=(extra >> 2) // 1000)
