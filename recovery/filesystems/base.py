"""`Entry` and the `FileSystem` base class: one API over every file system, and what its adapters share.

Each adapter (`ntfs`, `ext`, `xfs`, `fat`) fills in the small `_` methods of `FileSystem`; the public
methods (paths, sorting, walking, searching, error mapping) are written once, here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import io
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from recovery import names

from .errors import FileSystemError, NotADirectory, NotAFile, NotFound, dissect_errors
from .paging import Listed, Page
from .paths import join_path, split_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A file, folder or symbolic link as listed by a FileSystem."""

    path: str  # absolute, '/'-separated: "/Users/alice/notes.txt"; "/" for the root (escaped: recovery.names)
    name: str  # the last path segment; "" for the root (escaped, see recovery.names)
    is_dir: bool
    size: int  # bytes of the (unnamed) data stream; 0 for folders and links
    modified: datetime | None
    created: datetime | None
    owner: str | None = None  # "S-1-5-18" on NTFS, "uid 1000" on ext/XFS, None when unknown
    owner_name: str | None = None  # "SYSTEM", "Administrators", "root", ... for well-known owners
    is_symlink: bool = False  # symbolic links and NTFS junctions; never followed
    symlink_target: str | None = None
    hidden: bool = False  # Windows hidden attribute, or a Unix dot name
    file_id: int | None = None  # MFT record or inode number (shared by hard links); FAT: first cluster

    @property
    def owner_display(self) -> str | None:
        """ "Administrators (S-1-5-32-544)" when the owner is well known, else the owner as is."""
        if self.owner_name and self.owner:
            return f"{self.owner_name} ({self.owner})"
        return self.owner


class FileSystem(ABC):
    """Uniform read-only access to one volume's files; see the package docstring for the rules.

    Subclasses adapt one dissect parser through the small `_` methods below: the root node, looking
    a name up in a folder node, listing a folder node, turning a node into an Entry, opening it.
    Those work on raw names (str decoded losslessly from the disk); the public methods take and
    give escaped ones (`recovery.names`), so nothing past this class meets a name that is not text.
    """

    fs_type: str
    label: str | None
    # ext and XFS names are bytes decoded with "surrogateescape"; NTFS and FAT names are UTF-16.
    names_from_bytes: bool = False
    # Whether Entry.file_id addresses the node (inode, MFT record), so `entries_by_id` can read it.
    ids_are_addresses: bool = False

    # ---- public API ----

    def list_dir(self, path: str = "/") -> list[Entry]:
        parts = self._raw_parts(path)
        with dissect_errors(path):
            node, canonical = self._resolve(parts)
            if not self._is_dir(node):
                raise NotADirectory(f"not a folder: {self.escape(canonical)}")
            entries = [self._escaped(entry) for entry in self._list(canonical, node)]
        return sorted(entries, key=_sort_key)

    def list_page(self, path: str = "/", offset: int = 0, limit: int = Page.SIZE) -> Page:
        """Entries `offset` to `offset + limit` of `list_dir(path)`, and how many there are: every name
        is read and sorted, full metadata only for the page's entries (see `paging`)."""
        parts = self._raw_parts(path)
        with dissect_errors(path):
            node, canonical = self._resolve(parts)
            if not self._is_dir(node):
                raise NotADirectory(f"not a folder: {self.escape(canonical)}")
            listed = sorted(
                self._names_listed(canonical, node),
                key=lambda item: _name_sort_key(item.is_dir, self.escape(item.name)),
            )
            chosen = listed[max(0, offset) : max(0, offset) + limit]
            entries = [self._escaped(item.read()) for item in chosen]
        return Page(entries, len(listed), max(0, offset), limit)

    def entries_by_id(self, folder: str, listed: Sequence[tuple[str, int]]) -> list[Entry] | None:
        """The entries of `folder` that a listing index names as (escaped name, file id), read straight
        from their nodes without listing the folder (recovery.folder_index); None when this file system
        cannot reach a node by its id (FAT: a first cluster is no address)."""
        raw_folder = "/" + "/".join(self._raw_parts(folder))
        entries = []
        with dissect_errors(folder):
            for name, file_id in listed:
                raw_name = names.unescape(name)
                entry = self._entry_by_id(join_path(raw_folder, raw_name), raw_name, file_id)
                if entry is None:
                    return None
                entries.append(self._escaped(entry))
        return entries

    def stat(self, path: str) -> Entry:
        parts = self._raw_parts(path)
        with dissect_errors(path):
            if not parts:
                return self._entry("/", "", self._root_node())
            parent, parent_path = self._resolve(parts[:-1])
            if not self._is_dir(parent):
                raise NotADirectory(f"not a folder: {self.escape(parent_path)}")
            found = self._lookup(parent, parts[-1])
            if found is None:
                raise NotFound(f"no such file or folder: {self.escape(join_path(parent_path, parts[-1]))}")
            name, node = found
            return self._escaped(self._entry(join_path(parent_path, name), name, node))

    def open(self, path: str) -> BinaryIO:
        """A seekable stream of the file's data that reads only what is asked for."""
        parts = self._raw_parts(path)
        with dissect_errors(path):
            node, canonical = self._resolve(parts)
            why = self._not_a_file(node)
            if why:
                raise NotAFile(f"{self.escape(canonical)} is {why}")
            return self._open(node)

    def escape(self, raw: str) -> str:
        """A raw name or path of this volume as the product shows it (`recovery.names.escape`)."""
        return names.escape(raw, from_bytes=self.names_from_bytes)

    def walk(
        self, path: str = "/", onerror: Callable[[FileSystemError], None] | None = None
    ) -> Iterator[tuple[str, list[Entry]]]:
        """Yield (folder path, its sorted entries), breadth first from `path`, without following links.

        A subfolder that cannot be listed is skipped after calling `onerror` with the error (like
        os.walk), so one damaged folder does not end a search; errors on `path` itself propagate.
        """
        top = self.stat(path)
        queue, seen = deque([top.path]), {top.file_id}
        first = True
        while queue:
            current = queue.popleft()
            try:
                entries = self.list_dir(current)
            except FileSystemError as exc:
                if first:
                    raise
                exc.path = current
                if onerror is not None:
                    onerror(exc)
                continue
            first = False
            yield current, entries
            for entry in entries:
                # A damaged folder entry can point back at an ancestor; visit each folder once.
                if entry.is_dir and (entry.file_id is None or entry.file_id not in seen):
                    seen.add(entry.file_id)
                    queue.append(entry.path)

    def find(self, pattern: str, limit: int = 100, path: str = "/") -> list[Entry]:
        """Files and folders whose name matches (substring, or shell glob with * ? [ ]), case-insensitively.

        Stops as soon as `limit` matches are found; shallow folders are searched first.
        """
        if limit <= 0 or not pattern:
            return []
        matches = _matcher(pattern)
        found: list[Entry] = []
        for _folder, entries in self.walk(path):
            for entry in entries:
                if matches(entry.name):
                    found.append(entry)
                    if len(found) >= limit:
                        return found
        return found

    # ---- shared plumbing ----

    @staticmethod
    def _raw_parts(path: str) -> list[str]:
        """The raw segments of an escaped path (a raw path passes unchanged but for backslashes)."""
        return [names.unescape(part) for part in split_path(path)]

    def _escaped(self, entry: Entry) -> Entry:
        path, name, target = self.escape(entry.path), self.escape(entry.name), entry.symlink_target
        # Shown only, never looked up: Windows targets keep their single backslashes.
        shown_target = names.printable(target, from_bytes=self.names_from_bytes) if target else target
        if path == entry.path and name == entry.name and shown_target == target:
            return entry  # the usual case: nothing to escape, no copy
        return dataclasses.replace(entry, path=path, name=name, symlink_target=shown_target)

    def _resolve(self, parts: list[str]) -> tuple[Any, str]:
        """The node at `parts` and its canonical path (real case on NTFS/FAT); links are not followed."""
        node, canonical = self._root_node(), "/"
        for part in parts:
            if not self._is_dir(node):
                raise NotADirectory(f"not a folder: {self.escape(canonical)}")
            found = self._lookup(node, part)
            if found is None:
                raise NotFound(f"no such file or folder: {self.escape(join_path(canonical, part))}")
            name, node = found
            canonical = join_path(canonical, name)
        return node, canonical

    # ---- what each file system provides ----

    @abstractmethod
    def _root_node(self) -> Any: ...

    @abstractmethod
    def _is_dir(self, node: Any) -> bool:
        """A real folder: symbolic links to folders and junctions are not."""

    @abstractmethod
    def _lookup(self, folder: Any, name: str) -> tuple[str, Any] | None:
        """(real name, node) of `name` in `folder`, or None."""

    @abstractmethod
    def _list(self, folder_path: str, folder: Any) -> Iterator[Entry]: ...

    def _names_listed(self, folder_path: str, folder: Any) -> Iterator[Listed]:
        """The folder's raw names, each with how to read its entry; adapters that can tell a folder
        from its name's record alone override this, so a page reads metadata for its entries only."""
        for entry in self._list(folder_path, folder):
            yield Listed(entry.name, entry.is_dir, functools.partial(_same, entry))

    @abstractmethod
    def _entry(self, path: str, name: str, node: Any) -> Entry: ...

    @abstractmethod
    def _not_a_file(self, node: Any) -> str:
        """Why `node` cannot be opened ("a folder", "a symbolic link"), or "" for a regular file."""

    @abstractmethod
    def _open(self, node: Any) -> BinaryIO: ...

    def _entry_by_id(self, path: str, name: str, file_id: int) -> Entry | None:
        """The entry whose node has this id (inode, MFT record), raw names; None when ids are no address."""
        return None


def _sort_key(entry: Entry) -> tuple[bool, str, str]:
    return _name_sort_key(entry.is_dir, entry.name)


def _name_sort_key(is_dir: bool, name: str) -> tuple[bool, str, str]:
    return (not is_dir, name.casefold(), name)


def _same(entry: Entry) -> Entry:
    return entry


def _matcher(pattern: str) -> Callable[[str], bool]:
    """Shell glob when the pattern has glob characters, else a substring; both case-insensitive."""
    folded = pattern.casefold()
    if any(char in pattern for char in "*?["):
        return lambda name: fnmatch.fnmatchcase(name.casefold(), folded)
    return lambda name: folded in name.casefold()


# ---- helpers the adapters share ----


def read_safely(read: Callable[[], Any]) -> Any:
    """A metadata field, or None when reading it fails: one bad field must not hide the entry."""
    try:
        return read()
    except Exception as exc:
        log.debug("unreadable metadata field: %r", exc)
        return None


def aware_utc(value: datetime | None) -> datetime | None:
    """UTC-aware, and None for the "never set" values (Windows' 1601 and Unix's 1970 epochs exactly).
    Other times before 1970 are real (ext4 and XFS store them) and are kept."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.year <= 1601 or value.timestamp() == 0:
        return None
    return value.astimezone(UTC)


def empty_stream() -> BinaryIO:
    """Stands in for a file with no data stream, and for a volume that is not opened."""
    return io.BytesIO(b"")
