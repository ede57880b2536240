"""Paged folder listings: what a folder of 100,000 files needs to open as fast as one of 10.

`FileSystem.list_page` reads every name of the folder (the directory blocks or the NTFS index: a
few bytes an entry, with the folder flag that ext4, XFS, NTFS and FAT keep beside the name), sorts
them as `list_dir` does, and reads full metadata (an inode or MFT record each) only for the page's
entries. Each adapter says how it lists names cheaply by yielding `Listed`; one that does not falls
back to its full listing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .base import Entry


@dataclass(frozen=True)
class Listed:
    """A name in a folder before its metadata is read: the raw name, whether it is a real folder
    (links are not), and how to read the whole entry."""

    name: str
    is_dir: bool
    read: Callable[[], Entry]


@dataclass(frozen=True)
class Page:
    """Entries `offset` to `offset + limit` of a sorted folder listing of `total` entries."""

    SIZE: ClassVar[int] = 200  # entries a page shows unless asked otherwise

    entries: list[Entry]
    total: int
    offset: int
    limit: int

    @property
    def number(self) -> int:
        """1 for the first page."""
        return self.offset // self.limit + 1

    @property
    def count(self) -> int:
        """How many pages the folder fills (1 for an empty folder)."""
        return max(1, -(-self.total // self.limit))

    @property
    def first(self) -> int:
        """The 1-based position of the page's first entry (0 when empty)."""
        return self.offset + 1 if self.entries else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.entries)

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total
