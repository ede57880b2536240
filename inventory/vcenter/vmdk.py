"""VMDK descriptors: read from a datastore and parsed."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from .connection import Connection, MiB
from .datastore import read_datastore_file
from .errors import VCenterError


@dataclass(frozen=True)
class VmdkExtent:
    """One extent line of a VMDK descriptor: RW 2097152 VMFS "web-01-flat.vmdk" [offset]."""

    access: str  # "RW", "RDONLY", "NOACCESS"
    sectors: int  # of 512 bytes
    type: str  # "VMFS", "FLAT", "SPARSE", "VMFSSPARSE", "SESPARSE", "ZERO", "VMFSRDM", ... (upper case)
    file_name: str | None  # as written in the descriptor; None for ZERO
    offset: int  # sectors into the file where the extent starts (FLAT extents); 0 otherwise
    path: str | None  # datastore-relative, resolved against the descriptor's directory; None if absolute

    @property
    def kind(self) -> str:
        """ "flat" (raw bytes at offset), "sparse" (grain tables: sparse, seSparse, delta), "zero",
        "rdm" or "other": only "flat" extents may be read as raw disk bytes."""
        return _EXTENT_KINDS.get(self.type, "other")

    @property
    def size_bytes(self) -> int:
        return self.sectors * 512


_EXTENT_KINDS = {
    "FLAT": "flat",
    "VMFS": "flat",
    "ZERO": "zero",
    "SPARSE": "sparse",
    "VMFSSPARSE": "sparse",
    "SESPARSE": "sparse",
    "VSANSPARSE": "sparse",
    "VMFSRDM": "rdm",
    "VMFSRAW": "rdm",
    "VMFSPASSTHROUGHRAW": "rdm",
}


@dataclass(frozen=True)
class VmdkDescriptor:
    """A parsed VMDK descriptor (the text file "<disk>.vmdk", or the one embedded in a hosted sparse
    disk)."""

    path: str  # datastore-relative path it was read from ("" when parsed from text)
    create_type: str  # "vmfs", "monolithicFlat", "vmfsSparse" (a delta), "seSparse", "monolithicSparse", ...
    cid: str  # content id, 8 hex digits
    parent_cid: str  # "ffffffff" when the disk has no parent
    parent_file_name_hint: str | None  # as written: relative to the descriptor, or absolute
    parent_path: str | None  # the hint, datastore-relative (None if absent or absolute)
    adapter_type: str | None  # ddb.adapterType: "lsilogic", "pvscsi", "ide", ...
    extents: tuple[VmdkExtent, ...]

    @property
    def has_parent(self) -> bool:
        """A delta (snapshot) disk: its extents only hold what changed since the parent."""
        return self.parent_cid.lower() != "ffffffff" or self.parent_file_name_hint is not None

    @property
    def is_flat(self) -> bool:
        """Every byte of the disk is in flat extents (or zero extents), with no parent to merge."""
        return not self.has_parent and all(e.kind in ("flat", "zero") for e in self.extents)

    @property
    def capacity_bytes(self) -> int:
        return sum(e.size_bytes for e in self.extents)


_EXTENT_LINE = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$')
_SETTING_LINE = re.compile(r"^([A-Za-z][\w.]*)\s*=\s*(.*)$")
_SPARSE_MAGIC = b"KDMV"  # a hosted sparse disk (monolithicSparse, streamOptimized): descriptor inside
_MAX_DESCRIPTOR = MiB


def read_vmdk_descriptor(conn: Connection, datacenter: str, datastore: str, descriptor_path: str) -> VmdkDescriptor:
    """Read and parse a disk's descriptor ("web-01/web-01.vmdk", relative to the datastore); the
    descriptor embedded in a hosted sparse disk is found too. VCenterError when the file is not a
    VMDK descriptor (an empty file among them), NotFound when it does not exist."""
    head = read_datastore_file(conn, datacenter, datastore, descriptor_path, 0, 64 * 1024)
    if head.startswith(_SPARSE_MAGIC):
        head = _embedded_descriptor(conn, datacenter, datastore, descriptor_path, head)
    elif len(head) == 64 * 1024:  # a large descriptor (a long disk database): read the rest
        head += read_datastore_file(conn, datacenter, datastore, descriptor_path, len(head), _MAX_DESCRIPTOR)
    try:
        return parse_vmdk_descriptor(head.decode("utf-8", errors="replace"), descriptor_path)
    except ValueError as exc:
        raise VCenterError(f"[{datastore}] {descriptor_path}: {exc}") from None


def _embedded_descriptor(conn: Connection, datacenter: str, datastore: str, path: str, head: bytes) -> bytes:
    # SparseExtentHeader: magic, version, flags (uint32), capacity, grainSize, descriptorOffset,
    # descriptorSize (uint64, in sectors), little-endian.
    offset = int.from_bytes(head[28:36], "little") * 512
    size = min(int.from_bytes(head[36:44], "little") * 512, _MAX_DESCRIPTOR)
    if offset == 0 or size == 0:
        raise VCenterError(f"[{datastore}] {path}: a sparse disk without an embedded descriptor")
    return read_datastore_file(conn, datacenter, datastore, path, offset, size).rstrip(b"\0")


def parse_vmdk_descriptor(text: str, descriptor_path: str = "") -> VmdkDescriptor:
    """Parse a VMDK descriptor's text; extent and parent paths are resolved against the directory of
    descriptor_path (datastore-relative). ValueError when the text is not a descriptor."""
    settings: dict[str, str] = {}
    extents: list[VmdkExtent] = []
    directory = posixpath.dirname(descriptor_path)
    for line in text.replace("\0", "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if extent := _EXTENT_LINE.match(line):
            extents.append(_extent(extent, directory))
        elif setting := _SETTING_LINE.match(line):
            settings[setting.group(1).lower()] = _setting_value(setting.group(2))
    if not extents or "createtype" not in settings:
        raise ValueError("not a VMDK descriptor (no createType or no extent)")
    hint = settings.get("parentfilenamehint") or None
    return VmdkDescriptor(
        path=descriptor_path,
        create_type=settings["createtype"],
        cid=settings.get("cid", ""),
        parent_cid=settings.get("parentcid", "ffffffff"),
        parent_file_name_hint=hint,
        parent_path=_datastore_relative(directory, hint) if hint else None,
        adapter_type=settings.get("ddb.adaptertype"),
        extents=tuple(extents),
    )


def _setting_value(raw: str) -> str:
    """ "quoted value" -> quoted value (up to the last quote: names may hold '#'); bare -> up to a comment."""
    raw = raw.strip()
    if raw.startswith('"'):
        end = raw.rfind('"')
        return raw[1:end] if end > 0 else raw[1:]
    return raw.split("#", 1)[0].strip()


def _extent(match: re.Match[str], directory: str) -> VmdkExtent:
    access, sectors, kind, file_name, offset = match.groups()
    return VmdkExtent(
        access=access,
        sectors=int(sectors),
        type=kind.upper(),
        file_name=file_name,
        offset=int(offset or 0),
        path=_datastore_relative(directory, file_name) if file_name else None,
    )


def _datastore_relative(directory: str, name: str) -> str | None:
    """name resolved against directory, within the datastore; None for an absolute name
    ("/vmfs/volumes/...") or one that leaves the datastore."""
    if name.startswith("/"):
        return None
    path = posixpath.normpath(posixpath.join(directory, name))
    return None if path == ".." or path.startswith("../") else path
