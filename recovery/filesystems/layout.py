"""The volumes of a disk: partition tables (GPT, MBR), LVM2 logical volumes, or one file system on the disk.

`open_disk` numbers the volumes in disk order, recognises each by its signatures (`sniff`), opens the
file systems it can and gives every other volume a sentence saying why not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from uuid import UUID

from dissect.util.stream import RangeStream
from dissect.volume.disk import Disk
from dissect.volume.lvm import LVM2

from recovery import names

from .base import FileSystem, empty_stream
from .errors import NotBrowsable, NotFound, short_error
from .ext import ExtFileSystem
from .fat import FatFileSystem
from .ntfs import NtfsFileSystem
from .sniff import SECTOR, SNIFF_BYTES, sniff
from .xfs import XfsFileSystem

log = logging.getLogger(__name__)


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


# What can be opened, and how a damaged one is named in "damaged NTFS: ...".
_OPENERS: dict[str, tuple[str, Callable[[BinaryIO], FileSystem]]] = {
    "ntfs": ("NTFS", NtfsFileSystem),
    "ext": ("ext file system", ExtFileSystem),
    "xfs": ("XFS", XfsFileSystem),
    "fat": ("FAT", FatFileSystem),
}


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
                # Labels and GPT partition names are text from the disk, escaped like file names.
                label=names.escape(fs.label, from_bytes=fs.names_from_bytes) if fs and fs.label else None,
                fs_type=fs_type,
                browsable=fs is not None,
                reason="" if fs is not None else reason,
                name=names.escape(region.name, from_bytes=False) if region.name else region.name,
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
            self.add(region, reason=f"unreadable: {short_error(exc)}")
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
            self.add(region, reason=f"{label} with a feature that is not supported yet: {short_error(exc)}")
            return
        except Exception as exc:  # whatever a damaged volume makes dissect raise
            self.add(region, reason=f"damaged {label}: {short_error(exc)}")
            return
        self.add(region, fs=fs)

    def _probe_lvm(self, region: _Region) -> None:
        try:
            lvm = LVM2(region.stream)
            group = lvm.volume_group
            logical = [lv for lv in group.lv if lv.is_visible]
        except Exception as exc:
            self.add(region, reason=f"LVM volume groups are not supported yet (damaged metadata: {short_error(exc)})")
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
        placeholder = _Region(empty_stream(), _lv_offset(pv_region, group, lv), size, "Linux LVM logical volume", name)
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
                reason = f"LVM logical volume cannot be opened: {short_error(exc)}"
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
        builder.add(whole, reason=f"unreadable disk: {short_error(exc)}")
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
