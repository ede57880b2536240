"""Disk images for the recovery.filesystems tests: the trees written to them, building them (skipped
when a tool is missing outside make test), and reading or damaging them."""

from __future__ import annotations

import hashlib
import io
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recovery.filesystems import DiskLayout, open_disk
from tests.factories.images import TOOL_DIRS, TOOL_PACKAGES
from tools import diskimages

MIB = 1024 * 1024
PART_START = diskimages.PARTITION_START
FIXED = datetime.fromtimestamp(diskimages.FIXED_TIME, UTC)
# Not a multiple of any cluster size, so the streamed tail is checked too.
BIG = random.Random(2024).randbytes(5 * MIB + 12345)
GERMAN = "Überweisung Zoë.txt"
JAPANESE = "報告書 2024年.txt"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def streamed_sha256(stream: io.RawIOBase, piece: int = 256 * 1024) -> tuple[str, int]:
    """Hash a stream read in pieces; also return the largest piece, to show nothing read it whole."""
    digest, largest = hashlib.sha256(), 0
    while data := stream.read(piece):
        digest.update(data)
        largest = max(largest, len(data))
    return digest.hexdigest(), largest


def tool(name: str) -> str:
    # A skip outside make test; under make test (tests/strict.py) a failure naming the package.
    found = shutil.which(name, path=TOOL_DIRS)
    if found is None:
        package = TOOL_PACKAGES.get(name, name)
        pytest.skip(f"{name} is not installed: install the Debian package {package!r} (apt-get install {package})")
    return found


def build(builder, tree, **options) -> Path:
    try:
        return builder(tree, **options)
    except diskimages.MissingToolError as err:
        pytest.skip(str(err))


def open_image(path: Path) -> DiskLayout:
    handle = path.open("rb")
    return open_disk(handle, path.stat().st_size)


def windows_tree() -> dict:
    tree = diskimages.sample_windows_tree()
    alice = tree["Users"]["alice"]
    alice["Documents"][GERMAN] = "Betrag: 42,00 €\r\n"
    alice["Documents"][JAPANESE] = "四半期の報告\r\n"
    alice["Videos"] = {"Holiday 2023.mp4": BIG}
    tree["Empty.txt"] = b""
    return tree


def linux_tree() -> dict:
    tree = diskimages.sample_linux_tree()
    tree["home"]["bob"][GERMAN] = "Betrag: 42,00 €\n"
    tree["home"]["bob"][JAPANESE] = "四半期の報告\n"
    tree["srv"] = {"big.bin": BIG}
    tree["etc"]["empty.conf"] = b""
    return tree


def fat_tree() -> dict:
    return {
        "EFI": {"BOOT": {"BOOTX64.EFI": random.Random(5).randbytes(96 * 1024)}},
        "readme.txt": "lower-case 8.3 name\r\n",
        "README2.TXT": "upper-case 8.3 name\r\n",
        GERMAN: "Betrag: 42,00 €\r\n",
        JAPANESE: "四半期の報告\r\n",
        "Empty.txt": b"",
        "big.bin": BIG[: 2 * MIB],
    }


def copy_partition(image: Path, dest: Path, *, tail: int = 0) -> Path:
    """The file system of a one-partition diskimages image, as a file of its own."""
    size = image.stat().st_size - PART_START - tail
    with image.open("rb") as src, dest.open("wb") as out:
        src.seek(PART_START)
        out.write(src.read(size))
    return dest


def splice(data_or_path: bytes | Path, disk: Path, offset: int) -> None:
    data = data_or_path.read_bytes() if isinstance(data_or_path, Path) else data_or_path
    with disk.open("r+b") as out:
        out.seek(offset)
        out.write(data)
