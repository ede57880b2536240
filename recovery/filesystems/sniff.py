"""What a volume holds, judged by the signatures in its first bytes, before any parser sees it."""

from __future__ import annotations

from dataclasses import dataclass

from dissect.fat.fat import validate_bpb

SECTOR = 512
# Enough of a volume's start to see every signature we test, btrfs' at 64 KiB included.
SNIFF_BYTES = 68 * 1024


@dataclass(frozen=True)
class Sniffed:
    """A verdict of `sniff`: what kind of volume, and why it cannot be browsed when it cannot."""

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


def sniff(header: bytes) -> Sniffed:
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
            return Sniffed(kind, _UNBROWSABLE_REASONS.get(kind, ""))
    if not header.strip(b"\0"):
        return Sniffed("empty", _UNBROWSABLE_REASONS["empty"])
    return Sniffed("unknown", f"unknown file system (first bytes {header[:16].hex(' ')})")


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
