"""NTFS through dissect.ntfs, with a fast path that reads a listing's fields from raw MFT records.

A listing reads the folder's $I30 index, then one 1 KiB MFT record per entry for the real size,
$STANDARD_INFORMATION times and owner (the index's copy of them can be stale). dissect parses a
record's attributes lazily but all at once, with cstruct, at about 0.5 ms a record, so the few
fields a listing needs are read with struct instead (records with attribute lists or reparse points
still go through dissect); owners come from $Secure's $SII index, looked up once per security id.
Opening a volume reads its boot sector, the $MFT record, $Volume and $Secure's index roots: about
200 KiB on a 4 GiB NTFS volume, plus some 30 KiB for the root listing.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from dissect.ntfs import NTFS
from dissect.ntfs.attr import Attribute, AttributeHeader
from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE, FILE_NAME_DOS, FILE_NUMBER_ROOT, IO_REPARSE_TAG
from dissect.ntfs.secure import SecurityDescriptor
from dissect.ntfs.util import AttributeMap, segment_reference
from dissect.util.sid import read_sid

from .base import Entry, FileSystem, aware_utc, empty_stream, read_safely
from .paging import Listed
from .paths import join_path

log = logging.getLogger(__name__)

# NTFS keeps its own metadata in MFT records 0-15 ($MFT ... $Extend, the root "." itself).
NTFS_FIRST_USER_RECORD = 16
FILE_ATTRIBUTE_HIDDEN = 0x2

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


class NtfsFileSystem(FileSystem):
    """NTFS through dissect.ntfs; nodes are MftRecords."""

    fs_type = "ntfs"
    ids_are_addresses = True

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
                return name, _prepared(hit.dereference())
        except Exception as exc:
            log.debug("NTFS index search for %r missed: %r", name, exc)
        upper, candidate = name.upper(), None
        for real, entry in self._names(folder, index):
            if real == name:
                return real, _prepared(entry.dereference())
            if candidate is None and real.upper() == upper:
                candidate = real, entry
        return (candidate[0], _prepared(candidate[1].dereference())) if candidate else None

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
            yield self._indexed_entry(join_path(folder_path, name), name, index_entry)

    def _names_listed(self, folder_path: str, folder: Any) -> Iterator[Listed]:
        # The index key's $FILE_NAME copy says folder or not; the MFT record is read for the page only.
        for name, index_entry in self._names(folder, folder.index("$I30")):
            path = join_path(folder_path, name)
            yield Listed(
                name, _key_is_dir(index_entry), functools.partial(self._indexed_entry, path, name, index_entry)
            )

    def _indexed_entry(self, path: str, name: str, index_entry: Any) -> Entry:
        """The entry of one folder index entry: its MFT record, or the index's copy when that is broken."""
        try:
            record = _prepared(index_entry.dereference())  # one MFT record; attributes are parsed lazily
            return self._quick_entry(path, name, record) or self._entry(path, name, record)
        except Exception as exc:
            # A broken MFT record: the folder index's copy of $FILE_NAME still names and sizes it.
            log.info("NTFS record of %s unreadable (%r); listing it from the folder index", path, exc)
            return _ntfs_entry_from_index(path, name, index_entry)

    def _entry_by_id(self, path: str, name: str, file_id: int) -> Entry | None:
        record = _prepared(self._ntfs.mft.get(file_id))
        return self._quick_entry(path, name, record) or self._entry(path, name, record)

    def _entry(self, path: str, name: str, node: Any) -> Entry:
        info = node.attributes[ATTRIBUTE_TYPE_CODE.STANDARD_INFORMATION]
        target = _ntfs_link(node)
        is_dir = node.is_dir() and target is None
        owner, owner_name = self._owner(node, info)
        attributes = read_safely(lambda: info.file_attributes) or 0
        return Entry(
            path=path,
            name=name,
            is_dir=is_dir,
            size=0 if is_dir or target is not None else _ntfs_size(node),
            modified=aware_utc(read_safely(lambda: info.last_modification_time)) if info else None,
            created=aware_utc(read_safely(lambda: info.creation_time)) if info else None,
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
            modified=aware_utc(_filetime(info.modified)),
            created=aware_utc(_filetime(info.created)),
            owner=owner,
            owner_name=owner_name,
            hidden=bool(info.attributes & FILE_ATTRIBUTE_HIDDEN),
            file_id=record.segment,
        )

    def _owner_by_id(self, security_id: int) -> tuple[str | None, str | None]:
        # A volume has a few hundred distinct descriptors at most; each is looked up once.
        if security_id not in self._owners:
            sid = read_safely(lambda: self._ntfs.secure.lookup(security_id).owner) if self._ntfs.secure else None
            self._owners[security_id] = (sid or None, sid_name(sid) if sid else None)
        return self._owners[security_id]

    def _owner(self, node: Any, info: Any) -> tuple[str | None, str | None]:
        security_id = (read_safely(lambda: info.security_id) or 0) if info else 0
        if security_id:
            return self._owner_by_id(security_id)
        # Volumes from NTFS 1.x (and some tools) keep the descriptor in the record itself.
        descriptor = node.attributes[ATTRIBUTE_TYPE_CODE.SECURITY_DESCRIPTOR]
        sid = read_safely(lambda: SecurityDescriptor(descriptor.open()).owner) if descriptor else None
        return (sid or None), (sid_name(sid) if sid else None)

    def _not_a_file(self, node: Any) -> str:
        if _ntfs_link(node) is not None:
            return "a symbolic link"
        return "a folder" if node.is_dir() else ""

    def _open(self, node: Any) -> BinaryIO:
        try:
            return node.open()  # the unnamed $DATA stream; alternate data streams are ignored
        except FileNotFoundError:
            return empty_stream()  # no $DATA at all (some reparse points): nothing to read


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


def _prepared(record: Any) -> Any:
    """The record, its attributes made readable when a $FILE_NAME holds an unpaired surrogate.

    Such names are legal on NTFS, but dissect decodes every $FILE_NAME strictly as UTF-16 when it
    parses a record's attributes, so the file could be listed (from the folder index) and not
    opened. Nothing here needs the record's own $FILE_NAME (names come from the folder index):
    on that error the attributes are parsed again without them, and dissect's cached property is
    given that result.
    """
    if "attributes" in record.__dict__:
        return record
    try:
        record.attributes  # noqa: B018 - parse now, to catch the one error that has a remedy
    except UnicodeDecodeError:
        record.__dict__["attributes"] = _attributes_without_names(record)
    except Exception as exc:
        log.debug("NTFS record %s: attributes unreadable (%r)", getattr(record, "segment", "?"), exc)
    return record


def _attributes_without_names(record: Any) -> AttributeMap:
    """dissect's MftRecord.attributes loop, leaving out $FILE_NAME (and any attribute list)."""
    fh = io.BytesIO(record.data)
    offset = record.header.FirstAttributeOffset
    attributes = AttributeMap()
    while True:
        try:
            header = AttributeHeader(fh, offset, record)
        except EOFError:
            break
        if header.type == ATTRIBUTE_TYPE_CODE.END or header.record_length == 0:
            break
        if header.type != ATTRIBUTE_TYPE_CODE.FILE_NAME:
            attributes.add(Attribute(header, record))
        offset += header.record_length
    return attributes


def _ntfs_link(record: Any) -> str | None:
    """The target of a symbolic link or junction ("" when unreadable), None for anything else."""
    reparse = record.attributes[ATTRIBUTE_TYPE_CODE.REPARSE_POINT]
    if not reparse:
        return None
    tag = read_safely(lambda: reparse.tag)
    if tag not in (IO_REPARSE_TAG.SYMLINK, IO_REPARSE_TAG.MOUNT_POINT):
        return None  # dedup, OneDrive placeholders, ...: shown as the files they stand for
    return read_safely(lambda: reparse.print_name or reparse.substitute_name) or ""


def _ntfs_size(record: Any) -> int:
    try:
        return record.size()
    except FileNotFoundError:
        return 0


def _ntfs_entry_from_index(path: str, name: str, index_entry: Any) -> Entry:
    filename = read_safely(lambda: index_entry.attribute)
    is_link = bool(read_safely(lambda: filename.is_symlink() or filename.is_mount_point()))
    is_dir = bool(read_safely(lambda: filename.is_dir())) and not is_link
    return Entry(
        path=path,
        name=name,
        is_dir=is_dir,
        size=0 if is_dir or is_link else (read_safely(lambda: filename.file_size) or 0),
        modified=aware_utc(read_safely(lambda: filename.last_modification_time)),
        created=aware_utc(read_safely(lambda: filename.creation_time)),
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


_KEY_ATTRIBUTES = struct.Struct("<II")  # FileAttributes, then ReparsePointTag, at offset 56
_KEY_ATTRIBUTES_AT = 56
_INDEX_PRESENT = 0x10000000  # c_ntfs.FILE_NAME_INDEX_PRESENT: the record is a folder
_REPARSE_POINT = 0x400
_LINK_TAGS = (0xA000000C, 0xA0000003)  # IO_REPARSE_TAG SYMLINK, MOUNT_POINT


def _key_is_dir(entry: Any) -> bool:
    """Whether an index entry names a real folder (not a link or junction), as dissect's FileName.is_dir()
    and is_symlink()/is_mount_point() say, from the key's bytes: dissect's full parse of the key costs
    90 µs, 9 s for a folder of 100,000 files."""
    key = entry.buf
    if len(key) < _KEY_ATTRIBUTES_AT + _KEY_ATTRIBUTES.size:
        return False
    attributes, tag = _KEY_ATTRIBUTES.unpack_from(key, _KEY_ATTRIBUTES_AT)
    if attributes & _REPARSE_POINT and tag in _LINK_TAGS:
        return False
    return bool(attributes & _INDEX_PRESENT)


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
