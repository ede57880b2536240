"""Read the file systems inside a recovery point's disk image, for file-level restore (plain Python, no Django).

`open_disk(fileobj, size)` finds the volumes of a disk (GPT or MBR partitions, LVM2 logical volumes, or
one file system written straight onto the disk) and `DiskLayout.filesystem(index)` returns a
`FileSystem` that lists, searches and streams files with one API over NTFS, ext2/3/4, FAT12/16/32
and XFS. The disk is any seekable binary file object: a raw image, or `vault.engine.DiskReader`,
which reads a recovery point's chunks on demand.

Rules this module keeps, so callers (views, restore jobs) need not think about them:

- Nothing a damaged or unusual disk holds makes `open_disk` raise: every volume gets `browsable`
  and, when it is False, a `reason` sentence for people ("encrypted with BitLocker: cannot be
  browsed"). Volumes are recognised by their signatures before dissect parses them, and every
  exception dissect raises while opening one becomes "damaged NTFS: ..." and the like. Later
  errors while listing or reading a damaged structure surface as `DamagedFileSystem`.
- Paths are '/'-separated and absolute ("/Users/alice"); "" and "/" are the root. A ".." segment
  or a NUL raises ValueError, so no path escapes the root, whatever a URL carries. Missing paths
  raise `NotFound` (a FileNotFoundError), listing a file raises `NotADirectory`, opening a folder
  or a symbolic link raises `NotAFile`.
- Listings are sorted folders first, then by name case-insensitively. "." and "..", NTFS 8.3 (DOS)
  aliases and the NTFS metadata files at the root ($MFT, $Bitmap, $Extend, ...) are left out;
  hidden files are kept (and flagged). NTFS and FAT look names up case-insensitively, as Windows
  does; ext and XFS exactly.
- Names round-trip: NTFS and FAT long names are UTF-16 on disk and come back as str. ext and XFS
  names are bytes on disk and are decoded as UTF-8 with "surrogateescape", so a name that is not
  UTF-8 (say latin-1 b"caf\\xe9") is shown as "caf\\udce9" and that same str opens the file;
  `name.encode("utf-8", "surrogateescape")` gives the original bytes back (use that to put such
  a name in a URL or a restored file name).
- Symbolic links (and NTFS junctions) are listed with their target and never followed, neither
  in paths nor by `walk`/`find`. Hard links show up under each of their names. NTFS alternate
  data streams are ignored: `open` reads the unnamed $DATA stream.
- `open` streams: it returns a seekable file object that reads the extents a read() asks for,
  never the whole file at once. Its reads go through the disk file object, which is shared by
  every stream of the same disk: use a disk, its file systems and their streams from one thread.
- Listing touches metadata only; file data is read only by `open`. NTFS: the folder's $I30 index,
  then one 1 KiB MFT record per entry for the real size, $STANDARD_INFORMATION times and owner
  (the index's copy of them can be stale). dissect parses a record's attributes lazily but all at
  once, with cstruct, at about 0.5 ms a record, so the few fields a listing needs are read with
  struct instead (records with attribute lists or reparse points still go through dissect);
  owners come from $Secure's $SII index, looked up once per security id. ext/XFS: the directory
  blocks, then each entry's inode. FAT: the folder's clusters only. Opening a volume reads its
  boot sector or superblock and, for NTFS, the $MFT record, $Volume and $Secure's index roots:
  about 200 KiB on a 4 GiB NTFS volume, plus some 30 KiB for the root listing.
- `walk` and `find` visit each folder once (by `Entry.file_id`), so a damaged folder entry that
  points back at an ancestor cannot make them loop; a looping FAT cluster chain raises instead.
- Times are aware UTC datetimes, or None when the file system does not record one (or records
  zero). FAT records local time without a zone: its times are shown as if they were UTC.
- Owners: NTFS gives the owner SID ("S-1-5-21-...-1001", `owner_name` "Administrators" for the
  well-known ones); ext and XFS give "uid 1000" (`owner_name` "root" for uid 0); FAT has none.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import stat as stat_mod
import struct
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO
from uuid import UUID

from dissect.extfs import ExtFS
from dissect.fat.fat import FATFS, validate_bpb
from dissect.ntfs import NTFS
from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE, FILE_NAME_DOS, FILE_NUMBER_ROOT, IO_REPARSE_TAG
from dissect.ntfs.secure import SecurityDescriptor
from dissect.ntfs.util import segment_reference
from dissect.util.sid import read_sid
from dissect.util.stream import RangeStream
from dissect.volume.disk import Disk
from dissect.volume.lvm import LVM2
from dissect.xfs import XFS

log = logging.getLogger(__name__)

__all__ = [
    "DamagedFileSystem",
    "DiskLayout",
    "Entry",
    "FileSystem",
    "FileSystemError",
    "NotADirectory",
    "NotAFile",
    "NotBrowsable",
    "NotFound",
    "Volume",
    "open_disk",
    "sid_name",
    "split_path",
]

SECTOR = 512
# Enough of a volume's start to see every signature we test, btrfs' at 64 KiB included.
SNIFF_BYTES = 68 * 1024
# NTFS keeps its own metadata in MFT records 0-15 ($MFT ... $Extend, the root "." itself).
NTFS_FIRST_USER_RECORD = 16
FILE_ATTRIBUTE_HIDDEN = 0x2


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class FileSystemError(Exception):
    """Base class of the errors this module raises on purpose."""


class NotFound(FileSystemError, FileNotFoundError):
    """No file or folder at that path (or no volume with that index)."""


class NotADirectory(FileSystemError, NotADirectoryError):
    """A folder was expected but the path names a file or a symbolic link."""


class NotAFile(FileSystemError):
    """open() was given a folder, a symbolic link or a device/fifo/socket node."""


class NotBrowsable(FileSystemError):
    """The volume holds no file system this module can read; the message is its `reason`."""


class DamagedFileSystem(FileSystemError):
    """dissect failed while reading a structure of an opened volume (a damaged or unusual one)."""


# --------------------------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file, folder or symbolic link as listed by a FileSystem."""

    path: str  # absolute, '/'-separated: "/Users/alice/notes.txt"; "/" for the root
    name: str  # the last path segment; "" for the root
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


@dataclass(frozen=True)
class Volume:
    """One partition or logical volume of a disk, and whether its files can be browsed."""

    index: int  # 1, 2, ... in disk order; stable for an image, so fit for URLs
    offset: int  # bytes from the start of the disk (an LVM logical volume: where its first extent is)
    size: int
    partition_type: str  # "NTFS basic data", "Linux", "EFI system", "Microsoft reserved", ...
    label: str | None  # the file system's label when readable
    fs_type: str | None  # "ntfs", "ext4", "ext3", "ext2", "fat32", "fat16", "fat12", "xfs" or None
    browsable: bool
    reason: str  # "" when browsable, else a sentence saying why not
    name: str | None = None  # GPT partition name, or "vg/lv" for an LVM logical volume


@dataclass
class DiskLayout:
    """The volumes found on a disk, and their opened file systems."""

    size: int
    scheme: str  # "gpt", "mbr", "none" (a file system or LVM straight on the disk) or "unknown"
    volumes: list[Volume]
    _filesystems: dict[int, FileSystem] = field(default_factory=dict, repr=False)

    def volume(self, index: int) -> Volume:
        for volume in self.volumes:
            if volume.index == index:
                return volume
        raise NotFound(f"no volume {index} on this disk")

    def filesystem(self, index: int) -> FileSystem:
        """The file system of a browsable volume; NotBrowsable (with the reason) otherwise."""
        volume = self.volume(index)
        if not volume.browsable:
            raise NotBrowsable(volume.reason)
        return self._filesystems[index]


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    """The segments of an absolute or relative path; rejects ".." and NUL so nothing escapes the root."""
    if not isinstance(path, str):
        raise TypeError(f"path must be str, not {type(path).__name__}")
    if "\0" in path:
        raise ValueError("path contains a NUL character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"'..' is not allowed in paths: {path!r}")
    return parts


def join_path(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def _sort_key(entry: Entry) -> tuple[bool, str, str]:
    return (not entry.is_dir, entry.name.casefold(), entry.name)


def _matcher(pattern: str) -> Callable[[str], bool]:
    """Shell glob when the pattern has glob characters, else a substring; both case-insensitive."""
    folded = pattern.casefold()
    if any(char in pattern for char in "*?["):
        return lambda name: fnmatch.fnmatchcase(name.casefold(), folded)
    return lambda name: folded in name.casefold()


# --------------------------------------------------------------------------------------------
# Owners and times
# --------------------------------------------------------------------------------------------

WELL_KNOWN_SIDS = {
    "S-1-0-0": "Nobody",
    "S-1-1-0": "Everyone",
    "S-1-3-0": "Creator Owner",
    "S-1-3-1": "Creator Group",
    "S-1-5-7": "Anonymous",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-18": "SYSTEM",
    "S-1-5-19": "LOCAL SERVICE",
    "S-1-5-20": "NETWORK SERVICE",
    "S-1-5-32-544": "Administrators",
    "S-1-5-32-545": "Users",
    "S-1-5-32-546": "Guests",
    "S-1-5-32-547": "Power Users",
    "S-1-5-32-551": "Backup Operators",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464": "TrustedInstaller",
}
# Domain- or machine-relative SIDs end in a well-known RID (S-1-5-21-<domain>-<rid>).
WELL_KNOWN_RIDS = {500: "Administrator", 501: "Guest", 512: "Domain Admins", 513: "Domain Users"}


def sid_name(sid: str) -> str | None:
    """A friendly name for a well-known Windows SID, else None."""
    if sid in WELL_KNOWN_SIDS:
        return WELL_KNOWN_SIDS[sid]
    parts = sid.split("-")
    if sid.startswith("S-1-5-21-") and len(parts) == 8 and parts[-1].isdigit():
        return WELL_KNOWN_RIDS.get(int(parts[-1]))
    return None


def _uid_owner(uid: int) -> tuple[str, str | None]:
    return f"uid {uid}", "root" if uid == 0 else None


def _safe(read: Callable[[], Any]) -> Any:
    """A metadata field, or None when reading it fails: one bad field must not hide the entry."""
    try:
        return read()
    except Exception as exc:
        log.debug("unreadable metadata field: %r", exc)
        return None


def _aware(value: datetime | None) -> datetime | None:
    """UTC-aware, and None for the "never set" values (Windows 1601, Unix 1970 and earlier)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.year <= 1601 or value.timestamp() <= 0:
        return None
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# File systems
# --------------------------------------------------------------------------------------------


class FileSystem(ABC):
    """Uniform read-only access to one volume's files; see the module docstring for the rules.

    Subclasses adapt one dissect parser through the small `_` methods below: the root node, looking
    a name up in a folder node, listing a folder node, turning a node into an Entry, opening it.
    """

    fs_type: str
    label: str | None

    # ---- public API ----

    def list_dir(self, path: str = "/") -> list[Entry]:
        parts = split_path(path)
        with _dissect_errors(path):
            node, canonical = self._resolve(parts)
            if not self._is_dir(node):
                raise NotADirectory(f"not a folder: {canonical}")
            entries = list(self._list(canonical, node))
        return sorted(entries, key=_sort_key)

    def stat(self, path: str) -> Entry:
        parts = split_path(path)
        with _dissect_errors(path):
            if not parts:
                return self._entry("/", "", self._root_node())
            parent, parent_path = self._resolve(parts[:-1])
            if not self._is_dir(parent):
                raise NotADirectory(f"not a folder: {parent_path}")
            found = self._lookup(parent, parts[-1])
            if found is None:
                raise NotFound(f"no such file or folder: {join_path(parent_path, parts[-1])}")
            name, node = found
            return self._entry(join_path(parent_path, name), name, node)

    def open(self, path: str) -> BinaryIO:
        """A seekable stream of the file's data that reads only what is asked for."""
        parts = split_path(path)
        with _dissect_errors(path):
            node, canonical = self._resolve(parts)
            why = self._not_a_file(node)
            if why:
                raise NotAFile(f"{canonical} is {why}")
            return self._open(node)

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

    def _resolve(self, parts: list[str]) -> tuple[Any, str]:
        """The node at `parts` and its canonical path (real case on NTFS/FAT); links are not followed."""
        node, canonical = self._root_node(), "/"
        for part in parts:
            if not self._is_dir(node):
                raise NotADirectory(f"not a folder: {canonical}")
            found = self._lookup(node, part)
            if found is None:
                raise NotFound(f"no such file or folder: {join_path(canonical, part)}")
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

    @abstractmethod
    def _entry(self, path: str, name: str, node: Any) -> Entry: ...

    @abstractmethod
    def _not_a_file(self, node: Any) -> str:
        """Why `node` cannot be opened ("a folder", "a symbolic link"), or "" for a regular file."""

    @abstractmethod
    def _open(self, node: Any) -> BinaryIO: ...


@contextmanager
def _dissect_errors(path: str) -> Iterator[None]:
    """Turn whatever dissect raises on a damaged structure into DamagedFileSystem; ours pass unchanged."""
    try:
        yield
    except FileSystemError:
        raise
    except Exception as exc:
        raise DamagedFileSystem(f"cannot read {path!r}: {_short_error(exc)}") from exc


# ---- NTFS ----


class NtfsFileSystem(FileSystem):
    """NTFS through dissect.ntfs; nodes are MftRecords."""

    fs_type = "ntfs"

    def __init__(self, stream: BinaryIO) -> None:
        self._ntfs = NTFS(stream)
        self._root = self._ntfs.mft.root
        if not self._root.is_dir():
            raise ValueError("the root MFT record is not a folder")
        self.label = self._ntfs.volume_name or None
        self._owners: dict[int, tuple[str | None, str | None]] = {}

    def _root_node(self) -> Any:
        return self._root

    def _is_dir(self, node: Any) -> bool:
        return node.is_dir() and _ntfs_link(node) is None

    def _lookup(self, folder: Any, name: str) -> tuple[str, Any] | None:
        index = folder.index("$I30")
        try:
            # The B+ tree search is cheap on huge folders, but it compares with str.upper(), which
            # differs from NTFS's $UpCase for a few letters (ß), and it may land on an 8.3 alias or
            # on "A" when "a" also exists (POSIX names); anything but an exact hit falls back to a scan.
            hit = index.search(name)
            found = _index_name(hit)
            segment = segment_reference(hit.header.FileReference)
            if found is not None and found[0] == name and self._listed(folder, name, segment):
                return name, hit.dereference()
        except Exception as exc:
            log.debug("NTFS index search for %r missed: %r", name, exc)
        upper, candidate = name.upper(), None
        for real, entry in self._names(folder, index):
            if real == name:
                return real, entry.dereference()
            if candidate is None and real.upper() == upper:
                candidate = real, entry
        return (candidate[0], candidate[1].dereference()) if candidate else None

    def _names(self, folder: Any, index: Any) -> Iterator[tuple[str, Any]]:
        """(name, index entry) of what a listing shows: no 8.3 aliases, no "." or metadata files."""
        _check_index(index)
        for entry in index.entries():
            found = _index_name(entry)
            if found is not None and self._listed(folder, found[0], segment_reference(entry.header.FileReference)):
                yield found[0], entry

    @staticmethod
    def _listed(folder: Any, name: str, segment: int) -> bool:
        if name in ("", ".", "..") or segment == FILE_NUMBER_ROOT:
            return False
        # $MFT, $LogFile, $Bitmap, $Secure, $Extend, ... sit in the root with record numbers below 16.
        return not (folder.segment == FILE_NUMBER_ROOT and segment < NTFS_FIRST_USER_RECORD)

    def _list(self, folder_path: str, folder: Any) -> Iterator[Entry]:
        for name, index_entry in self._names(folder, folder.index("$I30")):
            path = join_path(folder_path, name)
            try:
                record = index_entry.dereference()  # reads one MFT record; attributes are parsed lazily
                yield self._quick_entry(path, name, record) or self._entry(path, name, record)
            except Exception as exc:
                # A broken MFT record: the folder index's copy of $FILE_NAME still names and sizes it.
                log.info("NTFS record of %s unreadable (%r); listing it from the folder index", path, exc)
                yield _ntfs_entry_from_index(path, name, index_entry)

    def _entry(self, path: str, name: str, node: Any) -> Entry:
        info = node.attributes[ATTRIBUTE_TYPE_CODE.STANDARD_INFORMATION]
        target = _ntfs_link(node)
        is_dir = node.is_dir() and target is None
        owner, owner_name = self._owner(node, info)
        attributes = _safe(lambda: info.file_attributes) or 0
        return Entry(
            path=path,
            name=name,
            is_dir=is_dir,
            size=0 if is_dir or target is not None else _ntfs_size(node),
            modified=_aware(_safe(lambda: info.last_modification_time)) if info else None,
            created=_aware(_safe(lambda: info.creation_time)) if info else None,
            owner=owner,
            owner_name=owner_name,
            is_symlink=target is not None,
            symlink_target=target or None,
            hidden=bool(attributes & FILE_ATTRIBUTE_HIDDEN),
            file_id=node.segment,
        )

    def _quick_entry(self, path: str, name: str, record: Any) -> Entry | None:
        """The Entry from the record's raw bytes, or None when only dissect's full parse will do.

        dissect parses every attribute of a record with cstruct (about 0.5 ms a record, most of a
        listing's time); the few fields a listing needs are at fixed offsets, so they are read
        with struct instead. Records with an attribute list or a reparse point take the slow path.
        """
        try:
            info = _scan_record(record.data)
        except struct.error:
            return None  # a mangled attribute header: let dissect judge the record
        if info is None:
            return None
        if info.security_id:
            owner, owner_name = self._owner_by_id(info.security_id)
        else:
            owner, owner_name = info.owner, sid_name(info.owner) if info.owner else None
        return Entry(
            path=path,
            name=name,
            is_dir=info.is_dir,
            size=0 if info.is_dir else info.size,
            modified=_aware(_filetime(info.modified)),
            created=_aware(_filetime(info.created)),
            owner=owner,
            owner_name=owner_name,
            hidden=bool(info.attributes & FILE_ATTRIBUTE_HIDDEN),
            file_id=record.segment,
        )

    def _owner_by_id(self, security_id: int) -> tuple[str | None, str | None]:
        # A volume has a few hundred distinct descriptors at most; each is looked up once.
        if security_id not in self._owners:
            sid = _safe(lambda: self._ntfs.secure.lookup(security_id).owner) if self._ntfs.secure else None
            self._owners[security_id] = (sid or None, sid_name(sid) if sid else None)
        return self._owners[security_id]

    def _owner(self, node: Any, info: Any) -> tuple[str | None, str | None]:
        security_id = (_safe(lambda: info.security_id) or 0) if info else 0
        if security_id:
            return self._owner_by_id(security_id)
        # Volumes from NTFS 1.x (and some tools) keep the descriptor in the record itself.
        descriptor = node.attributes[ATTRIBUTE_TYPE_CODE.SECURITY_DESCRIPTOR]
        sid = _safe(lambda: SecurityDescriptor(descriptor.open()).owner) if descriptor else None
        return (sid or None), (sid_name(sid) if sid else None)

    def _not_a_file(self, node: Any) -> str:
        if _ntfs_link(node) is not None:
            return "a symbolic link"
        return "a folder" if node.is_dir() else ""

    def _open(self, node: Any) -> BinaryIO:
        try:
            return node.open()  # the unnamed $DATA stream; alternate data streams are ignored
        except FileNotFoundError:
            return _empty_stream()  # no $DATA at all (some reparse points): nothing to read


@dataclass(frozen=True)
class _RecordInfo:
    is_dir: bool
    size: int
    created: int  # FILETIME
    modified: int
    attributes: int
    security_id: int
    owner: str | None  # from a descriptor stored in the record itself


# MFT record and attribute layouts (FILE_RECORD_SEGMENT_HEADER, ATTRIBUTE_RECORD_HEADER).
_RECORD_FIRST_ATTRIBUTE = 0x14
_RECORD_FLAGS = 0x16
_RECORD_IS_DIRECTORY = 0x2
_ATTR_STANDARD_INFORMATION = 0x10
_ATTR_ATTRIBUTE_LIST = 0x20
_ATTR_SECURITY_DESCRIPTOR = 0x50
_ATTR_DATA = 0x80
_ATTR_REPARSE_POINT = 0xC0
_ATTR_END = 0xFFFFFFFF
_SI_SECURITY_ID = 0x34  # present when $STANDARD_INFORMATION is the NTFS 3.x size (0x48)


def _scan_record(data: bytes) -> _RecordInfo | None:
    """Pick size, times, attributes and owner out of a (fixed-up) MFT record, or None to fall back."""
    fields: dict[str, Any] = {"size": 0, "owner": None, "security_id": 0}
    si: tuple[int, ...] | None = None
    offset = struct.unpack_from("<H", data, _RECORD_FIRST_ATTRIBUTE)[0]
    while offset + 16 <= len(data):
        kind, length, non_resident, name_length = struct.unpack_from("<IIBB", data, offset)
        if kind == _ATTR_END or length < 16 or offset + length > len(data):
            break
        if kind in (_ATTR_ATTRIBUTE_LIST, _ATTR_REPARSE_POINT):
            return None  # attributes live in other records, or a link target is needed
        value = _resident_value(data, offset) if not non_resident else None
        if kind == _ATTR_STANDARD_INFORMATION and value is not None and len(value) >= 0x24:
            si = struct.unpack_from("<QQQQI", value)
            if len(value) >= _SI_SECURITY_ID + 4:
                fields["security_id"] = struct.unpack_from("<I", value, _SI_SECURITY_ID)[0]
        elif kind == _ATTR_SECURITY_DESCRIPTOR and value is not None:
            fields["owner"] = _descriptor_owner(value)
        elif kind == _ATTR_DATA and name_length == 0:
            if value is not None:
                fields["size"] = len(value)
            elif struct.unpack_from("<Q", data, offset + 0x10)[0] == 0:  # the first extent holds the size
                fields["size"] = struct.unpack_from("<Q", data, offset + 0x30)[0]
        offset += length
    if si is None:
        return None
    is_dir = bool(struct.unpack_from("<H", data, _RECORD_FLAGS)[0] & _RECORD_IS_DIRECTORY)
    return _RecordInfo(is_dir=is_dir, created=si[0], modified=si[1], attributes=si[4], **fields)


def _resident_value(data: bytes, offset: int) -> bytes:
    length, value_offset = struct.unpack_from("<IH", data, offset + 0x10)
    return data[offset + value_offset : offset + value_offset + length]


def _descriptor_owner(descriptor: bytes) -> str | None:
    if len(descriptor) < 20:
        return None
    owner_offset = struct.unpack_from("<I", descriptor, 4)[0]
    if not owner_offset or owner_offset + 8 > len(descriptor):
        return None
    return read_sid(descriptor[owner_offset:]) or None


_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def _filetime(value: int) -> datetime | None:
    """Windows FILETIME (100 ns ticks since 1601) to an aware datetime; 0 means never set."""
    if not value:
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def _ntfs_link(record: Any) -> str | None:
    """The target of a symbolic link or junction ("" when unreadable), None for anything else."""
    reparse = record.attributes[ATTRIBUTE_TYPE_CODE.REPARSE_POINT]
    if not reparse:
        return None
    tag = _safe(lambda: reparse.tag)
    if tag not in (IO_REPARSE_TAG.SYMLINK, IO_REPARSE_TAG.MOUNT_POINT):
        return None  # dedup, OneDrive placeholders, ...: shown as the files they stand for
    return _safe(lambda: reparse.print_name or reparse.substitute_name) or ""


def _ntfs_size(record: Any) -> int:
    try:
        return record.size()
    except FileNotFoundError:
        return 0


def _ntfs_entry_from_index(path: str, name: str, index_entry: Any) -> Entry:
    filename = _safe(lambda: index_entry.attribute)
    is_link = bool(_safe(lambda: filename.is_symlink() or filename.is_mount_point()))
    is_dir = bool(_safe(lambda: filename.is_dir())) and not is_link
    return Entry(
        path=path,
        name=name,
        is_dir=is_dir,
        size=0 if is_dir or is_link else (_safe(lambda: filename.file_size) or 0),
        modified=_aware(_safe(lambda: filename.last_modification_time)),
        created=_aware(_safe(lambda: filename.creation_time)),
        is_symlink=is_link,
        file_id=segment_reference(index_entry.header.FileReference),
    )


def _check_index(index: Any) -> None:
    """Raise if a buffer the index root points to is broken.

    dissect's Index.entries() skips index buffers it cannot parse (unused ones may hold garbage),
    so a damaged folder would silently list as empty. The buffers the root refers to are in use:
    reading them here surfaces the damage, and dissect's cache makes the read free for entries().
    """
    for entry in index.root.entries():
        if entry.is_node:
            index.index_buffer(entry.node_vcn)


# The $FILE_NAME key of a folder index entry: name length at 64, namespace at 65, UTF-16 name at 66.
_KEY_NAME_LENGTH = 64
_KEY_NAMESPACE = 65
_KEY_NAME = 66


def _index_name(entry: Any) -> tuple[str, int] | None:
    """(name, namespace) straight from the index key, or None for 8.3 aliases and broken keys.

    Cheaper than dissect's full $FILE_NAME parse, and "surrogatepass" keeps names with unpaired
    UTF-16 surrogates (legal on NTFS) listable and openable instead of failing to decode.
    """
    key = entry.buf
    if entry.is_end or len(key) < _KEY_NAME:
        return None
    namespace = key[_KEY_NAMESPACE]
    if namespace == FILE_NAME_DOS:
        return None  # the alias duplicates a long name
    raw = key[_KEY_NAME : _KEY_NAME + 2 * key[_KEY_NAME_LENGTH]]
    return raw.decode("utf-16-le", "surrogatepass"), namespace


# ---- ext2/3/4 and XFS: both are inode file systems with the same dissect API ----


class _InodeFileSystem(FileSystem):
    """ext and XFS; nodes are dissect INodes. Names compare exactly, as the kernel does."""

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
            modified=_aware(_safe(lambda: node.mtime)),
            created=_aware(_safe(lambda: self._created(node))),
            owner=owner,
            owner_name=owner_name,
            is_symlink=is_link,
            symlink_target=(_safe(lambda: node.link) or "") if is_link else None,
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

    @abstractmethod
    def _uid(self, node: Any) -> int: ...

    @abstractmethod
    def _created(self, node: Any) -> datetime | None: ...


class ExtFileSystem(_InodeFileSystem):
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


class XfsFileSystem(_InodeFileSystem):
    """XFS (v4 and v5) through dissect.xfs."""

    fs_type = "xfs"

    def __init__(self, stream: BinaryIO) -> None:
        self._fs = XFS(stream)
        if self._fs.root.filetype != stat_mod.S_IFDIR:
            raise ValueError("the root inode is not a folder")
        self.label = self._fs.name or None

    def _uid(self, node: Any) -> int:
        return node.inode.di_uid

    def _created(self, node: Any) -> datetime | None:
        # Creation times exist only in v3 inodes (XFS v5); dissect reads garbage before that.
        return node.crtime if node.inode.di_version >= 3 else None


# ---- FAT ----


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

    def _entry(self, path: str, name: str, node: Any) -> Entry:
        if node is self._fs.root:
            return Entry(path="/", name="", is_dir=True, size=0, modified=None, created=None, file_id=node.cluster)
        dirent = node.dirent
        is_dir = node.is_directory()
        created = _safe(lambda: node.ctime) if dirent.DIR_CrtDate else None
        return Entry(
            path=path,
            name=name,
            is_dir=is_dir,
            size=0 if is_dir else dirent.DIR_FileSize,  # a folder's size would walk its cluster chain
            modified=_aware(_safe(lambda: node.mtime)),
            created=_aware(created),
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


def _empty_stream() -> BinaryIO:
    return io.BytesIO(b"")


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sniffed:
    kind: str  # "ntfs", "ext", "xfs", "fat", "lvm", "bitlocker", ..., "empty", "unknown"
    reason: str = ""  # for the kinds that cannot be browsed


# Volumes we recognise but do not (or cannot) browse, with the sentence shown for them.
_UNBROWSABLE_REASONS = {
    "bitlocker": "encrypted with BitLocker: cannot be browsed",
    "luks": "encrypted with LUKS: cannot be browsed",
    "swap": "swap space: holds no files",
    "exfat": "exFAT is not supported yet",
    "refs": "ReFS is not supported yet",
    "btrfs": "Btrfs is not supported yet",
    "iso9660": "ISO 9660 (CD image) is not supported yet",
    "empty": "empty: holds no file system (all zeros)",
}
# What can be opened, and how a damaged one is named in "damaged NTFS: ...".
_OPENERS: dict[str, tuple[str, Callable[[BinaryIO], FileSystem]]] = {
    "ntfs": ("NTFS", NtfsFileSystem),
    "ext": ("ext file system", ExtFileSystem),
    "xfs": ("XFS", XfsFileSystem),
    "fat": ("FAT", FatFileSystem),
}


def sniff(header: bytes) -> _Sniffed:
    """What a volume holds, judged by the signatures in its first SNIFF_BYTES bytes."""
    oem = header[3:11]
    checks: list[tuple[bool, str]] = [
        (oem == b"NTFS    ", "ntfs"),
        (oem == b"-FVE-FS-", "bitlocker"),
        (oem == b"EXFAT   ", "exfat"),
        (header[3:7] == b"ReFS", "refs"),
        (header[1080:1082] == b"\x53\xef", "ext"),
        (header[:4] == b"XFSB", "xfs"),
        (header[:6] == b"LUKS\xba\xbe", "luks"),
        (_has_lvm_label(header), "lvm"),
        (header[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"), "swap"),
        (header[0x10040:0x10048] == b"_BHRfS_M", "btrfs"),
        (_is_fat_boot_sector(header), "fat"),
        (header[0x8001:0x8006] == b"CD001", "iso9660"),
    ]
    for matched, kind in checks:
        if matched:
            return _Sniffed(kind, _UNBROWSABLE_REASONS.get(kind, ""))
    if not header.strip(b"\0"):
        return _Sniffed("empty", _UNBROWSABLE_REASONS["empty"])
    return _Sniffed("unknown", f"unknown file system (first bytes {header[:16].hex(' ')})")


def _has_lvm_label(header: bytes) -> bool:
    # The PV label lives in one of the first four sectors (the second, normally).
    return any(
        header[sector * SECTOR : sector * SECTOR + 8] == b"LABELONE"
        and header[sector * SECTOR + 24 : sector * SECTOR + 32] == b"LVM2 001"
        for sector in range(4)
    )


def _is_fat_boot_sector(header: bytes) -> bool:
    if len(header) < SECTOR or header[510:512] != b"\x55\xaa":
        return False
    try:
        validate_bpb(header[:SECTOR])
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Partition types
# --------------------------------------------------------------------------------------------

_GPT_TYPES = {
    UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"): "Basic data",
    UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"): "EFI system",
    UUID("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"): "Microsoft reserved",
    UUID("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"): "Windows recovery",
    UUID("5808C8AA-7E8F-42E0-85D2-E1E90434CFB3"): "Windows LDM metadata",
    UUID("AF9B60A0-1431-4F62-BC68-3311714A69AD"): "Windows LDM data",
    UUID("E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D"): "Windows Storage Spaces",
    UUID("21686148-6449-6E6F-744E-656564454649"): "BIOS boot",
    UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4"): "Linux",
    UUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"): "Linux root",
    UUID("44479540-F297-41B2-9AF7-D131D5F0458A"): "Linux root",
    UUID("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"): "Linux root",
    UUID("933AC7E1-2EB4-4F13-B844-0E14E2AEF915"): "Linux home",
    UUID("3B8F8425-20E0-4F3B-907F-1A25A76F98E8"): "Linux server data",
    UUID("BC13C2FF-59E6-4262-A352-B275FD6F7172"): "Linux extended boot",
    UUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"): "Linux swap",
    UUID("E6D6D379-F507-44C2-A23C-238F2A3DF928"): "Linux LVM",
    UUID("A19D880F-05FC-4D3B-A006-743F0F84911E"): "Linux RAID",
    UUID("CA7D7CCB-63ED-4C53-861C-1742536059CC"): "Linux LUKS",
}
_MBR_TYPES = {
    0x01: "FAT12",
    0x04: "FAT16",
    0x06: "FAT16",
    0x07: "NTFS",
    0x0B: "FAT32",
    0x0C: "FAT32",
    0x0E: "FAT16",
    0x17: "Hidden NTFS",
    0x1B: "Hidden FAT32",
    0x1C: "Hidden FAT32",
    0x27: "Windows recovery",
    0x42: "Windows dynamic disk",
    0x82: "Linux swap",
    0x83: "Linux",
    0x8E: "Linux LVM",
    0xEF: "EFI system",
    0xFD: "Linux RAID",
}
# Partitions whose type alone says why there is nothing to browse, when no file system is found.
_TYPE_REASONS = {
    "Microsoft reserved": "Microsoft reserved partition: holds no files",
    "BIOS boot": "BIOS boot partition: holds boot code, no files",
    "Windows LDM metadata": "Windows dynamic disks (LDM) are not supported yet",
    "Windows LDM data": "Windows dynamic disks (LDM) are not supported yet",
    "Windows dynamic disk": "Windows dynamic disks (LDM) are not supported yet",
    "Windows Storage Spaces": "Windows Storage Spaces are not supported yet",
    "Linux RAID": "Linux software RAID is not supported yet",
}


def _partition_type(partition: Any) -> str:
    known = _GPT_TYPES.get(partition.type) if isinstance(partition.type, UUID) else _MBR_TYPES.get(partition.type)
    if known:
        return known
    name = getattr(partition, "type_name", "") or ""
    if name and name != "Unknown":
        return name
    return f"type 0x{partition.type:02x}" if isinstance(partition.type, int) else f"type {partition.type}"


def _describe_type(partition_type: str, fs_type: str | None) -> str:
    # "Basic data" says nothing about the contents; "NTFS basic data" is how people know it.
    if partition_type == "Basic data" and fs_type:
        return f"{fs_type.upper() if fs_type != 'ntfs' else 'NTFS'} basic data"
    return partition_type


# --------------------------------------------------------------------------------------------
# Disks
# --------------------------------------------------------------------------------------------


@dataclass
class _Region:
    """A stretch of the disk to probe: a partition, a logical volume or the whole disk."""

    stream: BinaryIO
    offset: int
    size: int
    partition_type: str
    name: str | None = None


class _LayoutBuilder:
    """Numbers the volumes in disk order and keeps the file systems it opened."""

    def __init__(self) -> None:
        self.volumes: list[Volume] = []
        self.filesystems: dict[int, FileSystem] = {}

    def add(self, region: _Region, *, fs: FileSystem | None = None, reason: str = "") -> None:
        index = len(self.volumes) + 1
        fs_type = fs.fs_type if fs else None
        self.volumes.append(
            Volume(
                index=index,
                offset=region.offset,
                size=region.size,
                partition_type=_describe_type(region.partition_type, fs_type),
                label=fs.label if fs else None,
                fs_type=fs_type,
                browsable=fs is not None,
                reason="" if fs is not None else reason,
                name=region.name,
            )
        )
        if fs is not None:
            self.filesystems[index] = fs

    def probe(self, region: _Region, *, allow_lvm: bool = True) -> None:
        """Recognise what `region` holds and add it (and, for LVM, its logical volumes)."""
        try:
            region.stream.seek(0)
            header = region.stream.read(min(SNIFF_BYTES, region.size))
        except Exception as exc:
            self.add(region, reason=f"unreadable: {_short_error(exc)}")
            return
        sniffed = sniff(header)
        if sniffed.kind in _OPENERS:
            self._open(region, sniffed.kind)
        elif sniffed.kind == "lvm" and allow_lvm:
            self._probe_lvm(region)
        elif sniffed.kind == "lvm":
            self.add(region, reason="LVM inside an LVM logical volume is not supported")
        elif sniffed.kind in ("unknown", "empty") and region.partition_type in _TYPE_REASONS:
            self.add(region, reason=_TYPE_REASONS[region.partition_type])
        else:
            self.add(region, reason=sniffed.reason)

    def _open(self, region: _Region, kind: str) -> None:
        label, opener = _OPENERS[kind]
        try:
            fs = opener(region.stream)
        except NotImplementedError as exc:  # e.g. ext4 bigalloc: intact, but beyond dissect
            self.add(region, reason=f"{label} with a feature that is not supported yet: {_short_error(exc)}")
            return
        except Exception as exc:  # whatever a damaged volume makes dissect raise
            self.add(region, reason=f"damaged {label}: {_short_error(exc)}")
            return
        self.add(region, fs=fs)

    def _probe_lvm(self, region: _Region) -> None:
        try:
            lvm = LVM2(region.stream)
            group = lvm.volume_group
            logical = [lv for lv in group.lv if lv.is_visible]
        except Exception as exc:
            self.add(region, reason=f"LVM volume groups are not supported yet (damaged metadata: {_short_error(exc)})")
            return
        self.add(
            region,
            reason=f"LVM physical volume of volume group {group.name!r}: its logical volumes are listed separately",
        )
        for lv in logical:
            self._probe_logical_volume(region, group, lv)

    def _probe_logical_volume(self, pv_region: _Region, group: Any, lv: Any) -> None:
        extent_bytes = group.extent_size * SECTOR
        size = sum(segment.extent_count for segment in lv.segments) * extent_bytes
        name = f"{group.name}/{lv.name}"
        placeholder = _Region(_empty_stream(), _lv_offset(pv_region, group, lv), size, "Linux LVM logical volume", name)
        kinds = "/".join(sorted({segment.type for segment in lv.segments}))
        if kinds == "thin-pool":
            self.add(placeholder, reason="LVM thin pool: its thin volumes are listed separately")
            return
        try:
            stream = lv.open()  # linear, striped, thin and mirrors; dissect raises for the rest
        except NotImplementedError:
            self.add(placeholder, reason=f"LVM {kinds} volumes are not supported yet")
            return
        except Exception as exc:
            # Typically a volume group spanning several disks: the other physical volumes are not here.
            if "not found" in str(exc):
                reason = "LVM logical volume lies partly on another disk: cannot be browsed from this disk alone"
            else:
                reason = f"LVM logical volume cannot be opened: {_short_error(exc)}"
            self.add(placeholder, reason=reason)
            return
        placeholder.stream = stream
        self.probe(placeholder, allow_lvm=False)


def _lv_offset(pv_region: _Region, group: Any, lv: Any) -> int:
    """Where a linear logical volume's first extent is on the disk (else the physical volume's start)."""
    try:
        pv_name, first_extent = lv.segments[0].stripes[0]
        pv = group.physical_volumes[pv_name]
        return pv_region.offset + pv.pe_start * SECTOR + first_extent * group.extent_size * SECTOR
    except Exception:
        return pv_region.offset


def open_disk(fileobj: BinaryIO, size: int) -> DiskLayout:
    """Find the volumes of a disk image and open the file systems on them; never raises for bad contents.

    `fileobj` is a seekable binary file object of the whole disk (`size` bytes), e.g. an open image
    file or a `vault.engine.DiskReader`.
    """
    builder = _LayoutBuilder()
    whole = _Region(RangeStream(fileobj, 0, size), 0, size, "Whole disk (no partition table)")
    try:
        fileobj.seek(0)
        header = fileobj.read(min(SNIFF_BYTES, size))
    except Exception as exc:
        builder.add(whole, reason=f"unreadable disk: {_short_error(exc)}")
        return DiskLayout(size, "unknown", builder.volumes, builder.filesystems)
    sniffed = sniff(header)
    if sniffed.kind not in ("unknown", "empty"):
        # A file system (or LVM, or encryption) written straight onto the disk, as data disks often are.
        builder.probe(whole)
        return DiskLayout(size, "none", builder.volumes, builder.filesystems)
    disk = _partition_table(fileobj)
    if disk is None:
        if sniffed.kind == "empty":
            builder.add(whole, reason="empty disk: no partition table and no file system")
        else:
            builder.add(whole, reason=f"no partition table, and {sniffed.reason}")
        return DiskLayout(size, "unknown", builder.volumes, builder.filesystems)
    for partition in disk.partitions:
        region = _partition_region(fileobj, partition, disk, size)
        if region.size == 0:
            builder.add(region, reason="the partition lies beyond the end of the disk image")
        else:
            builder.probe(region)
    scheme = type(disk.scheme).__name__.lower()  # "gpt", "mbr", "apm", "bsd"
    return DiskLayout(size, scheme, builder.volumes, builder.filesystems)


def _partition_table(fileobj: BinaryIO) -> Any | None:
    # vSphere disks use 512-byte sectors; 4Kn disks show up as "GPT type partition, but MBR scheme".
    for sector_size in (SECTOR, 4096):
        try:
            fileobj.seek(0)
            return Disk(fileobj, sector_size=sector_size)
        except Exception as exc:
            log.debug("no partition table with %d-byte sectors: %r", sector_size, exc)
    return None


def _partition_region(fileobj: BinaryIO, partition: Any, disk: Any, disk_size: int) -> _Region:
    offset = partition.offset
    part_size = partition.size
    raw = partition.raw
    if hasattr(raw, "last_lba") and hasattr(raw, "first_lba"):
        # dissect computes GPT sizes as (last - first) sectors, but last_lba is inclusive.
        part_size = (raw.last_lba - raw.first_lba + 1) * disk.sector_size
    # A truncated image (or a table that lies) must not make reads wander past the disk's end.
    part_size = max(0, min(part_size, disk_size - offset))
    name = partition.name or None
    return _Region(RangeStream(fileobj, offset, part_size), offset, part_size, _partition_type(partition), name)


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    return text
