"""Build small raw disk images holding real file systems, without root and without mount.

Tests and demos need virtual disks that look like the ones a VMware VM really has (a partition
table, then NTFS, ext4 or FAT32 with real folders and files), so that backup, indexing and
file-level restore code can be exercised end to end. Every image is produced by user-space
tools only (mkntfs + wimlib, mke2fs -d, mkfs.vfat + mtools, sfdisk) and is cached on disk,
because the same few images are requested again and again by the test suite.

`build_hostile_disk("ext4" | "ntfs")` builds the volume restores trip on: names that are not UTF-8
(ext4) or hold an unpaired UTF-16 surrogate (NTFS), names Windows refuses or folds together, control
characters, 255-byte names, a path of some 3,900 bytes, dates before 1980 and after 2107, hard links
and symbolic links out of the volume (`hostile_items` says what it holds, `hostile_files` each file).

This module must stay importable without Django: it is used by tests and by command-line demos.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

# Bump when the layout or content of the images changes, so stale cache entries are not reused.
FORMAT_VERSION = 1

# Environment variable that moves the cache (tests point it at a temporary directory).
CACHE_ENV = "VMBACKUP_IMAGE_CACHE"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "diskimages"

MIB = 1024 * 1024
SECTOR = 512
# Windows, Linux installers and vSphere all start the first partition at 1 MiB (LBA 2048).
PARTITION_START = MIB
# All timestamps in the images are pinned to this instant (2024-01-15 09:30:00 UTC) so that the
# same inputs give the same bytes wherever the tools allow it.
FIXED_TIME = 1705311000

GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MBR_LINUX = "83"
MBR_FAT32_LBA = "c"

# FAT32 is only valid with at least 65525 clusters; readers (dissect included) decide the FAT
# type from the cluster count alone, so a "FAT32" with fewer clusters is read as FAT16.
FAT32_MIN_CLUSTERS = 65525

# Which Debian package provides each external tool, for the error message when one is missing.
TOOL_PACKAGES = {
    "mkntfs": "ntfs-3g",
    "wimlib-imagex": "wimtools",
    "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
}
# The mkfs tools live in /usr/sbin, which is not on an ordinary user's PATH on Debian.
EXTRA_TOOL_DIRS: tuple[str, ...] = ("/usr/sbin", "/sbin")

# Messages by which the tools say "the files do not fit" (wimlib/ntfs-3g, mke2fs, mtools).
NO_SPACE_MARKERS = ("No space left on device", "Could not allocate block", "Disk full")
# wimlib's progress lines ("Extracting file data: 8 MiB of 13 MiB (61%) done"), dropped from errors.
_PROGRESS = re.compile(r"\(\d+%\) done|scanned \(")

TreeNode: TypeAlias = "bytes | str | Mapping[str, TreeNode]"
Tree: TypeAlias = "Mapping[str, TreeNode]"


class DiskImageError(Exception):
    """Base class for every error raised while building a disk image."""


class MissingToolError(DiskImageError):
    """An external tool is not installed; names the Debian package that provides it."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} is not installed: install the Debian package {package!r} (apt-get install {package})")
        self.tool = tool
        self.package = package


class TreeTooLargeError(DiskImageError):
    """The files of the tree do not fit in the requested disk size."""


class ToolFailedError(DiskImageError):
    """An external tool exited with an error; carries the tail of its output."""


# --------------------------------------------------------------------------------------------
# Trees of files
# --------------------------------------------------------------------------------------------


def _walk(tree: Tree, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
    """Yield (path parts, node) depth first in sorted order, so hashing and writing are stable."""
    for name in sorted(tree):
        _check_name(name)
        node = tree[name]
        path = (*prefix, name)
        if isinstance(node, Mapping):
            yield path, node
            yield from _walk(node, path)
        elif isinstance(node, bytes | str):
            yield path, node
        else:
            raise TypeError(f"{'/'.join(path)}: expected bytes, str or dict, got {type(node).__name__}")


def _check_name(name: str) -> None:
    # One path component only: a "/" would silently create a different tree than described.
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid file name in tree: {name!r}")


def _content(node: bytes | str) -> bytes:
    return node.encode("utf-8") if isinstance(node, str) else node


def write_tree(root: Path, tree: Tree) -> None:
    """Write `tree` below `root`: a nested dict is a directory, str is written as UTF-8.

    Modes (0644 files, 0755 directories) and timestamps (FIXED_TIME) are set explicitly so the
    file systems built from the directory do not depend on the umask or the clock.
    """
    root.mkdir(parents=True, exist_ok=True)
    directories = [root]
    for parts, node in _walk(tree):
        path = root.joinpath(*parts)
        if isinstance(node, Mapping):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
            directories.append(path)
        else:
            path.write_bytes(_content(node))
            path.chmod(0o644)
            os.utime(path, (FIXED_TIME, FIXED_TIME))
    # Directory times last, because creating children bumps the parent's mtime.
    for directory in reversed(directories):
        os.utime(directory, (FIXED_TIME, FIXED_TIME))


def _tree_digest(tree: Tree) -> str:
    """Hash names, kinds and contents; the cache key must change when any file changes."""
    digest = hashlib.sha256()
    for parts, node in _walk(tree):
        name = "/".join(parts).encode("utf-8")
        if isinstance(node, Mapping):
            digest.update(b"D" + len(name).to_bytes(4, "big") + name)
        else:
            data = _content(node)
            digest.update(b"F" + len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def _tree_footprint(tree: Tree, block: int) -> int:
    """Lower bound of the space the tree needs: whole blocks per file, one block per directory."""
    total = 0
    for _parts, node in _walk(tree):
        size = block if isinstance(node, Mapping) else len(_content(node))
        total += -(-size // block) * block
    return total


# --------------------------------------------------------------------------------------------
# External tools
# --------------------------------------------------------------------------------------------


def _find_tool(tool: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_TOOL_DIRS])
    found = shutil.which(tool, path=search)
    if found is None:
        raise MissingToolError(tool, TOOL_PACKAGES.get(tool, tool))
    return found


def _require(*tools: str) -> None:
    # Checked before any work starts, so a missing package fails fast with a clear message.
    for tool in tools:
        _find_tool(tool)


def _tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # A UTF-8 locale is what lets mtools and wimlib handle names such as "Überweisungen";
    # UTC keeps FAT's local-time stamps equal to FIXED_TIME.
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"})
    env.update(extra or {})
    return env


def _run(args: list[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """Run a tool; turn "no space" failures into TreeTooLargeError, others into ToolFailedError."""
    command = [_find_tool(args[0]), *args[1:]]
    result = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        env=_tool_env(env),
        timeout=900,
    )
    if result.returncode == 0:
        return
    # wimlib draws progress with carriage returns; keep only the last lines that carry the error.
    output = (result.stdout + "\n" + result.stderr).replace("\r", "\n")
    lines = [line for line in output.splitlines() if line.strip() and not _PROGRESS.search(line)]
    tail = "\n".join(lines)[-1500:]
    if any(marker in output for marker in NO_SPACE_MARKERS):
        raise TreeTooLargeError(f"the files do not fit in the image ({args[0]} ran out of space):\n{tail}")
    raise ToolFailedError(f"{args[0]} failed with exit code {result.returncode}:\n{tail}")


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def image_cache_dir(override: Path | None = None) -> Path:
    """Where images are cached: `override`, else $VMBACKUP_IMAGE_CACHE, else <repo>/.cache/diskimages."""
    env = os.environ.get(CACHE_ENV)
    directory = override or (Path(env) if env else DEFAULT_CACHE_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _cache_key(builder: str, params: Mapping[str, object], tree: Tree) -> str:
    material = {
        "format": FORMAT_VERSION,
        "builder": builder,
        "params": dict(params),
        "tree": _tree_digest(tree),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _sweep_stale_builds(directory: Path, max_age: float = 6 * 3600) -> None:
    # A build killed with SIGKILL leaves its work directory behind; remove old ones.
    for leftover in directory.glob(".build-*"):
        try:
            if time.time() - leftover.stat().st_mtime > max_age:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:
            pass


def _cached_build(
    builder: str,
    params: Mapping[str, object],
    tree: Tree,
    cache_dir: Path | None,
    build: Callable[[Path, Path, str], None],
) -> Path:
    """Return the cached image for these inputs, building it first if needed.

    The image is built inside a private work directory in the cache directory and renamed into
    place only when complete, so an interrupted build never leaves a truncated cache entry and a
    concurrent identical build at worst does the work twice.
    """
    directory = image_cache_dir(cache_dir)
    key = _cache_key(builder, params, tree)
    target = directory / f"{builder}-{params['size_mib']}m-{key[:20]}.img"
    if target.is_file():
        return target
    _sweep_stale_builds(directory)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as work_name:
        work = Path(work_name)
        disk = work / "disk.img"
        build(work, disk, key)
        with disk.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(disk, target)
    return target


# --------------------------------------------------------------------------------------------
# Disks and partitions
# --------------------------------------------------------------------------------------------


def _partition_size(size_mib: int, scheme: str) -> int:
    # GPT keeps a backup header and table in the last 33 sectors; leave the last MiB free for it,
    # as Windows does, so the partition stays MiB-aligned at both ends.
    tail = MIB if scheme == "gpt" else 0
    return size_mib * MIB - PARTITION_START - tail


def _derived_uuid(key: str, salt: str) -> str:
    # Disk and partition GUIDs are derived from the cache key: stable for the same inputs.
    return str(uuid.UUID(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:32], version=4))


def _create_disk(disk: Path, size_mib: int, scheme: str, part_type: str, key: str) -> None:
    """Create a sparse disk file with one partition at PARTITION_START filling the disk."""
    with disk.open("wb") as handle:
        handle.truncate(size_mib * MIB)
    sectors = _partition_size(size_mib, scheme) // SECTOR
    start = PARTITION_START // SECTOR
    if scheme == "gpt":
        header = f"label: gpt\nlabel-id: {_derived_uuid(key, 'disk')}\n"
        entry = f"start={start}, size={sectors}, type={part_type}, uuid={_derived_uuid(key, 'part')}"
        entry += ', name="Basic data partition"'
    else:
        header = f"label: dos\nlabel-id: 0x{key[:8]}\n"
        entry = f"start={start}, size={sectors}, type={part_type}"
    script = f"{header}unit: sectors\n\n{entry}\n"
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "never", str(disk)], stdin=script)


def _data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of the regions of a sparse file that may hold data, skipping holes."""
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                return
            yield position, size  # file system without SEEK_DATA: treat everything as data
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        position = end


def _splice(partition: Path, disk: Path, offset: int, chunk: int = 4 * MIB) -> None:
    """Copy a partition file into the (zero-filled, sparse) disk at `offset`.

    Holes are skipped and all-zero chunks are not written, so a mostly empty 256 MiB partition
    costs only as much I/O and disk space as the data it holds.
    """
    zero = bytes(chunk)
    size = partition.stat().st_size
    with partition.open("rb") as src, disk.open("r+b") as dst:
        for start, end in _data_ranges(src.fileno(), size):
            for position in range(start, end, chunk):
                data = os.pread(src.fileno(), min(chunk, end - position), position)
                if data != (zero if len(data) == chunk else bytes(len(data))):
                    os.pwrite(dst.fileno(), data, offset + position)


def _new_partition_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.truncate(size)


def _check_fits(tree: Tree, capacity: int, block: int) -> None:
    # Catches the obvious cases before any tool runs; borderline ones surface as the tool's ENOSPC.
    needed = _tree_footprint(tree, block)
    if needed > capacity:
        raise TreeTooLargeError(
            f"the files need at least {needed / MIB:.1f} MiB but the partition holds {capacity / MIB:.1f} MiB"
        )


def _check_size(size_mib: int, minimum: int, what: str) -> None:
    if not isinstance(size_mib, int) or size_mib < minimum:
        raise ValueError(f"{what} disks need size_mib >= {minimum}, got {size_mib!r}")


# --------------------------------------------------------------------------------------------
# NTFS on GPT
# --------------------------------------------------------------------------------------------


def build_ntfs_disk(tree: Tree, *, size_mib: int, label: str = "Windows", cache_dir: Path | None = None) -> Path:
    """A GPT disk with one NTFS "Microsoft basic data" partition at 1 MiB holding `tree`.

    mkntfs cannot add files and ntfscp cannot create directories, so the tree is packed into an
    uncompressed WIM and applied onto the fresh volume by wimlib (through libntfs-3g).
    """
    _check_size(size_mib, 8, "NTFS")
    if len(label) > 32:
        raise ValueError(f"NTFS labels hold at most 32 characters: {label!r}")

    def build(work: Path, disk: Path, key: str) -> None:
        _require("mkntfs", "wimlib-imagex", "sfdisk")
        part_size = _partition_size(size_mib, "gpt")
        _check_fits(tree, part_size, 4096)
        staging, part, wim = work / "tree", work / "part.img", work / "tree.wim"
        write_tree(staging, tree)
        _new_partition_file(part, part_size)
        # -p: hidden sectors = partition start, -H/-S: the usual geometry, so the boot sector
        # matches what Windows writes and mkntfs does not warn about an unknown geometry.
        _run(["mkntfs", "-F", "-Q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", label, str(part)])
        _run(["wimlib-imagex", "capture", str(staging), str(wim), "--compress=none"])
        _run(["wimlib-imagex", "apply", str(wim), "1", str(part)])
        _create_disk(disk, size_mib, "gpt", GPT_BASIC_DATA, key)
        _splice(part, disk, PARTITION_START)

    params = {"size_mib": size_mib, "label": label}
    return _cached_build("ntfs", params, tree, cache_dir, build)


# --------------------------------------------------------------------------------------------
# ext4 on MBR
# --------------------------------------------------------------------------------------------


def _debugfs_normalize_script(tree: Tree) -> str:
    """debugfs commands that make owner and times of every inode the same on every machine.

    mke2fs -d copies uid/gid and ctime/atime from the staging directory, which depend on who
    runs the build and when; rewrite them to root:root and FIXED_TIME.
    """
    paths = ["/", "/lost+found"] + ["/" + "/".join(parts) for parts, _node in _walk(tree)]
    lines = []
    for path in paths:
        if '"' in path or "\n" in path:
            raise ValueError(f"unsupported character in ext4 path: {path!r}")
        for field, value in (
            ("uid", "0"),
            ("gid", "0"),
            ("atime", f"@{FIXED_TIME}"),
            ("ctime", f"@{FIXED_TIME}"),
        ):
            lines.append(f'sif "{path}" {field} {value}')
    return "\n".join(lines) + "\n"


def build_ext4_disk(tree: Tree, *, size_mib: int, label: str = "linux-root", cache_dir: Path | None = None) -> Path:
    """An MBR disk with one Linux (0x83) partition at 1 MiB holding an ext4 file system with `tree`.

    Everything is owned by root:root with 0644/0755 modes; UUID, hash seed and times are derived
    from the inputs so a rebuild yields the same bytes.
    """
    _check_size(size_mib, 8, "ext4")
    if len(label.encode("utf-8")) > 16:
        raise ValueError(f"ext4 labels hold at most 16 bytes: {label!r}")

    def build(work: Path, disk: Path, key: str) -> None:
        _require("mke2fs", "debugfs", "sfdisk")
        part_size = _partition_size(size_mib, "mbr")
        _check_fits(tree, part_size, 4096)
        staging, part = work / "tree", work / "part.img"
        write_tree(staging, tree)
        _new_partition_file(part, part_size)
        fs_uuid = _derived_uuid(key, "ext4")
        fake_time = {"E2FSPROGS_FAKE_TIME": str(FIXED_TIME)}
        # -b 4096: the block size real root file systems use (mke2fs would pick 1 KiB when small).
        options = f"root_owner=0:0,hash_seed={fs_uuid},nodiscard"
        mke2fs = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-U", fs_uuid, "-E", options]
        _run([*mke2fs, "-d", str(staging), str(part)], env=fake_time)
        script = work / "normalize.debugfs"
        script.write_text(_debugfs_normalize_script(tree), encoding="utf-8")
        _run(["debugfs", "-w", "-f", str(script), str(part)], env=fake_time)
        _create_disk(disk, size_mib, "mbr", MBR_LINUX, key)
        _splice(part, disk, PARTITION_START)

    params = {"size_mib": size_mib, "label": label}
    return _cached_build("ext4", params, tree, cache_dir, build)


# --------------------------------------------------------------------------------------------
# FAT32 on MBR
# --------------------------------------------------------------------------------------------


def _fat32_sectors_per_cluster(part_size: int) -> int:
    """The largest cluster (up to 4 KiB) that still leaves FAT32 its minimum cluster count."""
    sectors = part_size // SECTOR
    for per_cluster in (8, 4, 2, 1):
        # ~2% headroom for the reserved sectors and the two FATs that precede the data area.
        if sectors // per_cluster >= FAT32_MIN_CLUSTERS * 1.02:
            return per_cluster
    minimum_mib = -(-int(FAT32_MIN_CLUSTERS * 1.02 * SECTOR + PARTITION_START) // MIB)
    raise ValueError(f"FAT32 needs at least {minimum_mib} MiB disks ({FAT32_MIN_CLUSTERS} clusters)")


def build_fat_disk(tree: Tree, *, size_mib: int, label: str = "DATA", cache_dir: Path | None = None) -> Path:
    """An MBR disk with one FAT32 (0x0c, LBA) partition at 1 MiB holding `tree` with long names."""
    if not label.isascii() or len(label) > 11:
        raise ValueError(f"FAT labels hold at most 11 ASCII characters: {label!r}")
    _check_size(size_mib, 1, "FAT32")
    per_cluster = _fat32_sectors_per_cluster(_partition_size(size_mib, "mbr"))

    def build(work: Path, disk: Path, key: str) -> None:
        _require("mkfs.vfat", "mcopy", "sfdisk")
        part_size = _partition_size(size_mib, "mbr")
        _check_fits(tree, part_size, per_cluster * SECTOR)
        staging, part = work / "tree", work / "part.img"
        write_tree(staging, tree)
        _new_partition_file(part, part_size)
        # --invariant pins the boot sector's time-derived fields; -i then sets a per-input serial.
        mkfs = ["mkfs.vfat", "-F", "32", "-S", "512", "-s", str(per_cluster), "-h", "2048", "--invariant"]
        _run([*mkfs, "-i", key[:8], "-n", label, str(part)])
        entries = sorted(str(path) for path in staging.iterdir())
        if entries:
            # -s recurses into folders, -m keeps FIXED_TIME, -Q stops at the first error.
            _run(["mcopy", "-s", "-m", "-Q", "-i", str(part), *entries, "::/"], env={"MTOOLS_SKIP_CHECK": "1"})
        _create_disk(disk, size_mib, "mbr", MBR_FAT32_LBA, key)
        _splice(part, disk, PARTITION_START)

    params = {"size_mib": size_mib, "label": label}
    return _cached_build("fat32", params, tree, cache_dir, build)


# --------------------------------------------------------------------------------------------
# Hostile names: a volume of everything real guests hold that restores trip on
# --------------------------------------------------------------------------------------------

HOSTILE_FORMATS = ("ext4", "ntfs")
# Pinned dates that zip cannot hold (DOS dates run from 1980 to 2107), and one past 2038.
HOSTILE_OLD_TIME = 157766400  # 1975-01-01 00:00:00 UTC
HOSTILE_FUTURE_TIME = 8204803200  # 2230-01-01 00:00:00 UTC
HOSTILE_2040_TIME = 2208988800  # 2040-01-01 00:00:00 UTC
# A path from the volume root of about 3,900 bytes (Linux takes 4,096 in one call, and a restore
# target adds its own folder in front): 19 folders of 204 bytes.
HOSTILE_DEEP_LEVELS = 19


@dataclass(frozen=True)
class HostileItem:
    """One entry of the hostile-names volume; `path` is bytes, '/'-separated, from the volume root."""

    path: bytes
    kind: str  # "dir", "file", "hardlink" (to `target`, a path), "symlink" (pointing at `target`)
    data: bytes = b""
    target: bytes = b""
    mtime: int = FIXED_TIME


def _hostile_names(fs_format: str) -> list[bytes]:
    """File names in the "names" folder: each is a trap for a zip tool, Windows, or a web page."""
    found = [
        # Windows sees each pair as one name once it is made safe, or folds case.
        b"a:b",
        b"a_b",
        b"x.",
        b"x",
        b"Q?",
        b"Q*",
        b"Report.txt",
        b"report.txt",
        b"trailing dot.",
        b"trailing space ",
        b"dots and space. .",
        b"CON",
        b"nul.txt",
        b"COM1.log",
        b"aux",
        b"LPT9",
        b"new\nline.txt",
        b"tab\there",
        b"bell\x07",
        b"esc\x1b[31mred",
        b"del\x7f",
        b"back\\slash.txt",
        b"caf\\xe9 literal.txt",
        b'quote"and|pipe<>.txt',
        b"L" * 251 + b".txt",  # 255 bytes, the longest name ext4 and NTFS hold
        "é".encode() * 127 + b"x",  # 255 bytes of UTF-8, 128 UTF-16 units
        # An unpaired UTF-16 surrogate (U+DC80) spelled as WTF-8: wimlib writes it to NTFS as the
        # unpaired surrogate; on ext4 these are three bytes that are not UTF-8.
        b"\xed\xb2\x80 lone surrogate.txt",
        "naïve ✓ 日本.txt".encode(),
    ]
    if fs_format == "ext4":
        # Bytes that are no UTF-8 at all: wimlib refuses them, so only the ext4 volume has them.
        found += [b"caf\xe9.txt", b"\xff\xfe raw bytes", b"latin-1 \xe0 la \xe7a.txt"]
    return found


def hostile_items(fs_format: str) -> list[HostileItem]:
    """What the hostile-names volume of `fs_format` ("ext4" or "ntfs") holds, parents first."""
    if fs_format not in HOSTILE_FORMATS:
        raise ValueError(f"fs_format must be one of {HOSTILE_FORMATS}: {fs_format!r}")
    items = [
        HostileItem(b"names", "dir"),
        HostileItem(b"names/folder:colon", "dir"),
        HostileItem(b"names/folder_colon", "dir"),
    ]
    items += [
        HostileItem(b"names/" + name, "file", b"content of " + name + b"\n") for name in _hostile_names(fs_format)
    ]
    items += [
        HostileItem(b"names/folder:colon/inside.txt", "file", b"in the colon folder\n"),
        HostileItem(b"names/folder_colon/inside.txt", "file", b"in the underscore folder\n"),
        HostileItem(b"RESTORE-REPORT.txt", "file", b"a file of the guest with the report's name\n"),
        HostileItem(b"dates", "dir"),
        HostileItem(b"dates/1975.txt", "file", b"from 1975\n", mtime=HOSTILE_OLD_TIME),
        HostileItem(b"dates/2040.txt", "file", b"from 2040\n", mtime=HOSTILE_2040_TIME),
        HostileItem(b"dates/2230.txt", "file", b"from 2230\n", mtime=HOSTILE_FUTURE_TIME),
        HostileItem(b"links", "dir"),
        HostileItem(b"links/original.txt", "file", b"one file, two names\n"),
        HostileItem(b"links/hard link.txt", "hardlink", target=b"links/original.txt"),
        HostileItem(b"links/to passwd", "symlink", target=b"/etc/passwd"),
        HostileItem(b"links/up and out", "symlink", target=b"../../../../../etc"),
        HostileItem(b"links/root", "symlink", target=b"/"),
    ]
    deep = b"deep"
    items.append(HostileItem(deep, "dir"))
    for level in range(HOSTILE_DEEP_LEVELS):
        deep += b"/" + (b"%02d-" % level) + b"d" * 201
        items.append(HostileItem(deep, "dir"))
    items.append(HostileItem(deep + b"/bottom.txt", "file", b"about 4,000 bytes down\n"))
    return items


def hostile_files(fs_format: str) -> dict[bytes, bytes]:
    """Every file of the volume (hard links under each name) and its content, by bytes path."""
    items = hostile_items(fs_format)
    data = {item.path: item.data for item in items if item.kind == "file"}
    return data | {item.path: data[item.target] for item in items if item.kind == "hardlink"}


def _write_hostile_tree(root: Path, items: list[HostileItem]) -> None:
    """Create the items below `root` with bytes names, relative to open folders (the deep path is
    longer than the kernel takes in one path once the staging folder is in front of it)."""
    root.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for item in items:
            parent, _, name = item.path.rpartition(b"/")
            folder = _open_relative(root_fd, parent)
            try:
                _create_item(folder, name, item, root_fd)
            finally:
                if folder != root_fd:
                    os.close(folder)
        # Times last, deepest first, because creating children bumps a folder's time.
        for item in reversed(items):
            if item.kind in ("file", "dir"):
                os.utime(item.path, (item.mtime, item.mtime), dir_fd=root_fd, follow_symlinks=False)
    finally:
        os.close(root_fd)


def _open_relative(root_fd: int, path: bytes) -> int:
    folder = root_fd
    for part in [p for p in path.split(b"/") if p]:
        inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
        if folder != root_fd:
            os.close(folder)
        folder = inner
    return folder


def _create_item(folder: int, name: bytes, item: HostileItem, root_fd: int) -> None:
    if item.kind == "dir":
        os.mkdir(name, 0o755, dir_fd=folder)
    elif item.kind == "file":
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(item.data)
    elif item.kind == "hardlink":
        os.link(item.target, name, src_dir_fd=root_fd, dst_dir_fd=folder)
    elif item.kind == "symlink":
        os.symlink(item.target, name, dir_fd=folder)
    else:
        raise ValueError(f"unknown kind {item.kind!r}")


def _hostile_digest(items: list[HostileItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        for part in (item.path, item.kind.encode(), item.data, item.target, str(item.mtime).encode()):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def build_hostile_disk(fs_format: str, *, size_mib: int = 24, cache_dir: Path | None = None) -> Path:
    """A disk (ext4 on MBR, or NTFS on GPT) holding `hostile_items(fs_format)`, cached like the others.

    ext4: `mke2fs -d` copies the staging folder with its bytes names, hard links and symbolic links;
    it keeps only 32 bits of a time, so the dates after 2038 are set afterwards with debugfs (which
    writes the ext4 epoch bits). NTFS: wimlib carries everything but names that are not UTF-8 (it
    refuses them; WTF-8 names become unpaired surrogates), and turns symbolic links into reparse points.
    """
    items = hostile_items(fs_format)
    spec = {"hostile-names": _hostile_digest(items)}
    if fs_format == "ntfs":
        _check_size(size_mib, 8, "NTFS")
    else:
        _check_size(size_mib, 8, "ext4")

    def build(work: Path, disk: Path, key: str) -> None:
        staging, part = work / "tree", work / "part.img"
        _write_hostile_tree(staging, items)
        if fs_format == "ntfs":
            _require("mkntfs", "wimlib-imagex", "sfdisk")
            _new_partition_file(part, _partition_size(size_mib, "gpt"))
            _run(["mkntfs", "-F", "-Q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", "Hostile", str(part)])
            _run(["wimlib-imagex", "capture", str(staging), str(work / "tree.wim"), "--compress=none"])
            _run(["wimlib-imagex", "apply", str(work / "tree.wim"), "1", str(part)])
            _create_disk(disk, size_mib, "gpt", GPT_BASIC_DATA, key)
        else:
            _require("mke2fs", "debugfs", "sfdisk")
            _new_partition_file(part, _partition_size(size_mib, "mbr"))
            fake_time = {"E2FSPROGS_FAKE_TIME": str(FIXED_TIME)}
            options = f"root_owner=0:0,hash_seed={_derived_uuid(key, 'ext4')},nodiscard"
            mke2fs = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "hostile", "-E", options]
            _run([*mke2fs, "-U", _derived_uuid(key, "ext4"), "-d", str(staging), str(part)], env=fake_time)
            late = [i for i in items if i.mtime > 2**31 - 1]
            script = "".join(f'sif "/{i.path.decode()}" mtime @{i.mtime}\n' for i in late)
            (work / "dates.debugfs").write_text(script, encoding="utf-8")
            _run(["debugfs", "-w", "-f", str(work / "dates.debugfs"), str(part)], env=fake_time)
            _create_disk(disk, size_mib, "mbr", MBR_LINUX, key)
        _splice(part, disk, PARTITION_START)

    return _cached_build(f"hostile-{fs_format}", {"size_mib": size_mib}, spec, cache_dir, build)


# --------------------------------------------------------------------------------------------
# Sample content for demos and tests
# --------------------------------------------------------------------------------------------


def _noise(seed: str, size: int, header: bytes = b"") -> bytes:
    """Deterministic incompressible bytes, so backup tests see data that does not deduplicate away."""
    return header + hashlib.shake_256(seed.encode()).digest(size - len(header))


def _text(*lines: str, eol: str = "\n") -> str:
    return "".join(line + eol for line in lines)


def _windows_documents() -> dict[str, TreeNode]:
    budget = [
        f"2024-{month:02d},{category},{(month * 37 + len(category) * 11) % 900 + 50}.00"
        for month in range(1, 13)
        for category in ("Rent", "Groceries", "Travel", "Utilities")
    ]
    transfers = [
        f"{day:02d}.01.2024;Müller & Söhne GmbH;Rechnung {4711 + day};{day * 12.5:.2f}" for day in range(1, 21)
    ]
    minutes = _text(
        "会議の議事録",
        "参加者: 田中、佐藤、アリス",
        "決定事項: バックアップを毎日実行する。",
        eol="\r\n",
    )
    return {
        "Budget 2024.csv": _text("Month,Category,Amount (EUR)", *budget, eol="\r\n"),
        "Meeting notes.txt": _text("Q1 planning", "- migrate file server", "- test restores", eol="\r\n"),
        "Überweisungen": {
            "Januar 2024.csv": _text("Datum;Empfänger;Verwendungszweck;Betrag", *transfers, eol="\r\n"),
            "Kontoauszug Februar.txt": _text("Kontostand am 29.02.2024: 3.141,59 €", eol="\r\n"),
        },
        "プロジェクト": {"議事録 2024-01.txt": minutes},
    }


def sample_windows_tree() -> dict[str, TreeNode]:
    """Files of a small Windows desktop, with German and Japanese names and two files over 1 MiB."""
    agent_log = [f"2024-01-15 09:{minute:02d}:00 INFO Backup agent heartbeat ok" for minute in range(60)]
    return {
        "Users": {
            "alice": {
                "Documents": _windows_documents(),
                "Pictures": {"Urlaub 2023.jpg": _noise("alice-photo", 1536 * 1024, b"\xff\xd8\xff\xe0\x00\x10JFIF")},
                "Desktop": {"desktop.ini": _text("[.ShellClassInfo]", "IconResource=imageres.dll,-183", eol="\r\n")},
            },
        },
        "Program Files": {
            "Contoso Backup Agent": {
                "agent.exe": _noise("contoso-agent", 1280 * 1024, b"MZ\x90\x00\x03\x00\x00\x00"),
                "agent.ini": _text("[server]", "url=https://backup.example.com", "retries=3", eol="\r\n"),
                "Logs": {"agent-2024-01-15.log": _text(*agent_log, eol="\r\n")},
            },
        },
        "Windows": {
            "System32": {"drivers": {"etc": {"hosts": _text("127.0.0.1 localhost", "::1 localhost", eol="\r\n")}}},
        },
    }


def sample_linux_tree() -> dict[str, TreeNode]:
    """Files of a small Linux server (hostname web01), with two files over 1 MiB."""
    syslog = [
        f"Jan 15 09:{second // 60:02d}:{second % 60:02d} web01 systemd[1]: Started session {second} of bob."
        for second in range(0, 1800, 10)
    ]
    access = [
        f'192.0.2.{n % 250 + 1} - - [15/Jan/2024:09:30:{n % 60:02d} +0000] "GET / HTTP/1.1" 200 {512 + n}'
        for n in range(400)
    ]
    fstab = _text(
        "# <file system> <mount point> <type> <options> <dump> <pass>",
        "LABEL=linux-root  /      ext4  errors=remount-ro  0  1",
        "tmpfs             /tmp   tmpfs defaults           0  0",
    )
    return {
        "etc": {
            "hostname": "web01\n",
            "hosts": _text("127.0.0.1\tlocalhost", "127.0.1.1\tweb01"),
            "fstab": fstab,
            "os-release": _text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', "ID=debian", 'VERSION_ID="12"'),
        },
        "home": {
            "bob": {
                ".bashrc": _text("export EDITOR=vim", "alias ll='ls -l'"),
                "notes.txt": _text("TODO", "- rotate nginx logs", "- check nightly backup report"),
                "projects": {"report.csv": _text("host,cpu,mem", "web01,12,48", "db01,35,71")},
                "backups": {"db-dump-2024-01-14.sql.gz": _noise("bob-db-dump", 1536 * 1024, b"\x1f\x8b\x08\x00")},
            },
        },
        "var": {
            "log": {"syslog": _text(*syslog), "nginx": {"access.log": _text(*access)}},
            "lib": {"app": {"blob.bin": _noise("app-blob", 1100 * 1024)}},
        },
    }


# --------------------------------------------------------------------------------------------
# VMDK descriptor
# --------------------------------------------------------------------------------------------

# Adapter types that may appear in ddb.adapterType (LSI SAS and PVSCSI disks are written as
# "lsilogic" by vSphere).
VMDK_ADAPTER_TYPES = ("ide", "buslogic", "lsilogic", "legacyESX")
VMDK_VIRTUAL_HW_VERSION = "13"


def _vmdk_geometry(sectors: int, adapter_type: str) -> tuple[int, int, int]:
    # The BIOS-style geometry vSphere records: 16 heads for IDE, 255 for SCSI, 63 sectors/track,
    # cylinders capped at the format's maximum.
    heads, per_track, max_cylinders = (16, 63, 16383) if adapter_type == "ide" else (255, 63, 65535)
    return min(sectors // (heads * per_track), max_cylinders), heads, per_track


def vmdk_descriptor(flat_file_name: str, size_bytes: int, adapter_type: str = "lsilogic") -> str:
    """The descriptor of a monolithicFlat VMFS disk ("<name>.vmdk") pointing at `flat_file_name`.

    The layout follows what ESXi writes next to a "<name>-flat.vmdk"; CID, longContentID and
    uuid are derived from the name and size so the text is stable.
    """
    if not flat_file_name or any(char in flat_file_name for char in '"/\n\r'):
        raise ValueError(f"invalid flat file name: {flat_file_name!r}")
    if size_bytes <= 0 or size_bytes % SECTOR:
        raise ValueError(f"disk size must be a positive multiple of {SECTOR} bytes: {size_bytes}")
    if adapter_type not in VMDK_ADAPTER_TYPES:
        raise ValueError(f"adapter_type must be one of {VMDK_ADAPTER_TYPES}: {adapter_type!r}")
    sectors = size_bytes // SECTOR
    cylinders, heads, per_track = _vmdk_geometry(sectors, adapter_type)
    seed = hashlib.sha256(f"{flat_file_name}:{size_bytes}".encode()).hexdigest()
    long_content_id = seed[:32]
    cid = long_content_id[-8:]
    disk_uuid = " ".join(seed[32 + i : 34 + i] for i in range(0, 32, 2))
    return (
        "# Disk DescriptorFile\n"
        "version=1\n"
        'encoding="UTF-8"\n'
        f"CID={cid}\n"
        "parentCID=ffffffff\n"
        'isNativeSnapshot="no"\n'
        'createType="vmfs"\n'
        "\n"
        "# Extent description\n"
        f'RW {sectors} VMFS "{flat_file_name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.adapterType = "{adapter_type}"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        f'ddb.geometry.heads = "{heads}"\n'
        f'ddb.geometry.sectors = "{per_track}"\n'
        f'ddb.longContentID = "{long_content_id}"\n'
        f'ddb.uuid = "{disk_uuid}"\n'
        f'ddb.virtualHWVersion = "{VMDK_VIRTUAL_HW_VERSION}"\n'
    )
