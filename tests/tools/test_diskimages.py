"""Disk images built by tools.diskimages read back with dissect, without root, mount or Django."""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import pytest
from dissect.extfs import ExtFS
from dissect.fat.fat import FATFS, Fattype
from dissect.ntfs import NTFS
from dissect.volume.disk import Disk, Partition
from dissect.volume.disk.schemes import GPT, MBR

from tools import diskimages
from tools.diskimages import (
    MissingToolError,
    TreeTooLargeError,
    build_ext4_disk,
    build_fat_disk,
    build_ntfs_disk,
    sample_linux_tree,
    sample_windows_tree,
    vmdk_descriptor,
    write_tree,
)

SIZE_MIB = 64
MIB = 1024 * 1024
BASIC_DATA = UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
WINDOWS = sample_windows_tree()
LINUX = sample_linux_tree()
NESTED_NTFS_FILES = [
    "Users/alice/Documents/Überweisungen/Januar 2024.csv",
    "Users/alice/Documents/プロジェクト/議事録 2024-01.txt",
    "Program Files/Contoso Backup Agent/Logs/agent-2024-01-15.log",
    "Users/alice/Pictures/Urlaub 2023.jpg",
]


def files_of(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """(slash-separated path, content) of every file in a tree."""
    for name, node in tree.items():
        if isinstance(node, Mapping):
            yield from files_of(node, f"{prefix}{name}/")
        else:
            yield prefix + name, node.encode() if isinstance(node, str) else node


def node_at(tree: Mapping, path: str) -> bytes:
    node = tree
    for part in path.split("/"):
        node = node[part]
    return node.encode() if isinstance(node, str) else node


@contextmanager
def only_partition(image: Path) -> Iterator[tuple[Disk, Partition]]:
    """Open a disk image with dissect and return its single partition."""
    with image.open("rb") as fh:
        disk = Disk(fh)
        assert len(disk.partitions) == 1
        yield disk, disk.partitions[0]


@pytest.fixture(scope="module", autouse=True)
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every image of this module out of the repository's cache."""
    cache = tmp_path_factory.mktemp("diskimages-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(diskimages.CACHE_ENV, str(cache))
        yield cache


@pytest.fixture(scope="module")
def ntfs_image(image_cache: Path) -> Path:
    return build_ntfs_disk(WINDOWS, size_mib=SIZE_MIB, label="Windows")


@pytest.fixture(scope="module")
def ext4_image(image_cache: Path) -> Path:
    return build_ext4_disk(LINUX, size_mib=SIZE_MIB, label="linux-root")


@pytest.fixture(scope="module")
def fat_image(image_cache: Path) -> Path:
    return build_fat_disk(WINDOWS, size_mib=SIZE_MIB, label="DATA")


# ---------------------------------------------------------------------------------------------
# Trees and samples
# ---------------------------------------------------------------------------------------------


def test_write_tree_writes_nested_files_with_fixed_modes_and_times(tmp_path: Path) -> None:
    write_tree(tmp_path / "root", {"a": {"b": {"c.txt": "Grüße"}}, "raw.bin": b"\x00\xff"})

    nested = tmp_path / "root" / "a" / "b" / "c.txt"
    assert nested.read_bytes() == "Grüße".encode()
    assert (tmp_path / "root" / "raw.bin").read_bytes() == b"\x00\xff"
    assert nested.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "root" / "a").stat().st_mode & 0o777 == 0o755
    assert nested.stat().st_mtime == diskimages.FIXED_TIME
    assert (tmp_path / "root" / "a").stat().st_mtime == diskimages.FIXED_TIME


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0"])
def test_write_tree_rejects_names_that_are_not_one_component(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid file name"):
        write_tree(tmp_path, {name: "x"})


@pytest.mark.parametrize("tree", [WINDOWS, LINUX], ids=["windows", "linux"])
def test_sample_trees_are_small_but_hold_large_incompressible_files(tree: Mapping) -> None:
    files = dict(files_of(tree))
    assert sum(map(len, files.values())) < 4 * MIB
    large = [data for data in files.values() if len(data) > MIB]
    assert len(large) >= 2
    assert all(len(zlib.compress(data)) > 0.99 * len(data) for data in large)


def test_sample_windows_tree_has_german_and_japanese_names() -> None:
    paths = [path for path, _data in files_of(WINDOWS)]
    assert any("Überweisungen/" in path for path in paths)
    assert any("議事録" in path for path in paths)
    assert any(path.startswith("Program Files/") for path in paths)


def test_sample_trees_are_deterministic() -> None:
    assert sample_windows_tree() == WINDOWS
    assert sample_linux_tree() == LINUX


# ---------------------------------------------------------------------------------------------
# NTFS on GPT
# ---------------------------------------------------------------------------------------------


def test_ntfs_disk_has_gpt_with_one_basic_data_partition_at_1_mib(ntfs_image: Path) -> None:
    assert ntfs_image.stat().st_size == SIZE_MIB * MIB
    with only_partition(ntfs_image) as (disk, partition):
        assert isinstance(disk.scheme, GPT)
        assert partition.type == BASIC_DATA
        assert partition.offset == MIB
        assert partition.offset + partition.size <= (SIZE_MIB * MIB) - 33 * 512


def test_ntfs_volume_label(ntfs_image: Path) -> None:
    with only_partition(ntfs_image) as (_disk, partition):
        assert NTFS(partition.open()).volume_name == "Windows"


@pytest.mark.parametrize("path", NESTED_NTFS_FILES)
def test_ntfs_nested_files_read_back_identical(ntfs_image: Path, path: str) -> None:
    with only_partition(ntfs_image) as (_disk, partition):
        record = NTFS(partition.open()).mft.get(path)
        assert record.open().read() == node_at(WINDOWS, path)


def test_ntfs_holds_every_file_and_lists_non_ascii_names(ntfs_image: Path) -> None:
    with only_partition(ntfs_image) as (_disk, partition):
        fs = NTFS(partition.open())
        for path, data in files_of(WINDOWS):
            assert fs.mft.get(path).size() == len(data), path
        names = set(fs.mft.get("Users/alice/Documents").listdir())
    assert names == {"Budget 2024.csv", "Meeting notes.txt", "Überweisungen", "プロジェクト"}


# ---------------------------------------------------------------------------------------------
# Hostile names
# ---------------------------------------------------------------------------------------------


def test_hostile_items_hold_every_trap_the_restore_must_survive() -> None:
    for fs_format in diskimages.HOSTILE_FORMATS:
        items = diskimages.hostile_items(fs_format)
        paths = {item.path for item in items}
        assert {b"names/a:b", b"names/a_b", b"names/x.", b"names/Report.txt", b"names/CON"} <= paths
        assert b"names/new\nline.txt" in paths and max(len(p.rsplit(b"/", 1)[-1]) for p in paths) == 255
        assert max(len(p) for p in paths) > 3900  # near the 4,096 bytes Linux takes in one call
        assert {item.kind for item in items} == {"dir", "file", "hardlink", "symlink"}
    assert b"names/caf\xe9.txt" in diskimages.hostile_files("ext4")
    assert b"names/caf\xe9.txt" not in diskimages.hostile_files("ntfs")  # wimlib refuses bytes that are not UTF-8


def test_hostile_ext4_disk_holds_bytes_names_links_and_dates_past_2038() -> None:
    image = diskimages.build_hostile_disk("ext4")
    assert diskimages.build_hostile_disk("ext4") == image  # cached
    with only_partition(image) as (_disk, partition):
        fs = ExtFS(partition.open())
        for path, data in diskimages.hostile_files("ext4").items():
            assert fs.get(path.decode("utf-8", "surrogateescape")).open().read() == data, path
        assert fs.get("/links/hard link.txt").inum == fs.get("/links/original.txt").inum
        assert fs.get("/links/to passwd").link == "/etc/passwd"
        # The kernel's encoding: the low 32 bits as a signed number, plus 2**32 times the epoch bits.
        future = fs.get("/dates/2230.txt").inode
        signed = future.i_mtime - (1 << 32) if future.i_mtime >= 1 << 31 else future.i_mtime
        assert signed + ((future.i_mtime_extra & 3) << 32) == diskimages.HOSTILE_FUTURE_TIME


def test_hostile_ntfs_disk_holds_windows_traps_and_an_unpaired_surrogate() -> None:
    image = diskimages.build_hostile_disk("ntfs")
    with only_partition(image) as (_disk, partition):
        fs = NTFS(partition.open())
        for path, data in diskimages.hostile_files("ntfs").items():
            # dissect's own lookup fails in a folder with an unpaired surrogate, splits on backslashes
            # and folds case: recovery.filesystems reads "names" (tests/recovery/test_hostile_names.py).
            if not path.startswith(b"names/"):
                assert fs.mft.get(path.decode()).open().read() == data, path
        assert fs.mft.get("links/hard link.txt").segment == fs.mft.get("links/original.txt").segment
        raw_names = [bytes(entry.buf[66:]) for entry in fs.mft.get("names").index("$I30").entries() if not entry.is_end]
        assert any(b"\x80\xdc \x00l\x00o\x00n\x00e\x00" in raw for raw in raw_names)  # U+DC80, unpaired
        for item in diskimages.hostile_items("ntfs"):
            if item.path.startswith(b"names/") and item.path.count(b"/") == 1:
                name = item.path[6:].decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass")
                assert any(raw.startswith(name) for raw in raw_names), item.path


# ---------------------------------------------------------------------------------------------
# ext4 on MBR
# ---------------------------------------------------------------------------------------------


def test_ext4_disk_has_mbr_with_one_linux_partition_at_1_mib(ext4_image: Path) -> None:
    with only_partition(ext4_image) as (disk, partition):
        assert isinstance(disk.scheme, MBR)
        assert partition.type == 0x83
        assert partition.offset == MIB
        assert partition.offset + partition.size == SIZE_MIB * MIB


def test_ext4_label_and_every_file_read_back_identical(ext4_image: Path) -> None:
    with only_partition(ext4_image) as (_disk, partition):
        fs = ExtFS(partition.open())
        assert fs.volume_name == "linux-root"
        for path, data in files_of(LINUX):
            assert fs.get(path).open().read() == data, path


def test_ext4_owner_modes_and_times_are_normalised(ext4_image: Path) -> None:
    with only_partition(ext4_image) as (_disk, partition):
        fs = ExtFS(partition.open())
        notes = fs.get("/home/bob/notes.txt")
        home = fs.get("/home/bob")
        assert {".bashrc", "notes.txt", "projects", "backups"} <= set(home.listdir())
        for inode, mode in ((notes, 0o100644), (home, 0o040755)):
            assert inode.inode.i_mode == mode
            assert (inode.inode.i_uid, inode.inode.i_gid) == (0, 0)
            assert inode.mtime.timestamp() == inode.ctime.timestamp() == diskimages.FIXED_TIME


def test_ext4_rebuild_elsewhere_gives_identical_bytes(ext4_image: Path, tmp_path: Path) -> None:
    again = build_ext4_disk(LINUX, size_mib=SIZE_MIB, label="linux-root", cache_dir=tmp_path)
    assert again != ext4_image
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(ext4_image.read_bytes()).digest()


# ---------------------------------------------------------------------------------------------
# FAT32 on MBR
# ---------------------------------------------------------------------------------------------


def test_fat_disk_has_mbr_with_one_fat32_partition_at_1_mib(fat_image: Path) -> None:
    with only_partition(fat_image) as (disk, partition):
        assert isinstance(disk.scheme, MBR)
        assert partition.type == 0x0C
        assert partition.offset == MIB
        fs = FATFS(partition.open())
        assert fs.type == Fattype.FAT32
        assert fs.volume_label == "DATA"


def test_fat_every_file_including_non_ascii_reads_back_identical(fat_image: Path) -> None:
    with only_partition(fat_image) as (_disk, partition):
        fs = FATFS(partition.open())
        for path, data in files_of(WINDOWS):
            assert fs.get(path).open().read() == data, path
        names = {entry.name for entry in fs.get("Users/alice/Documents").iterdir()} - {".", ".."}
    assert names == {"Budget 2024.csv", "Meeting notes.txt", "Überweisungen", "プロジェクト"}


def test_fat_needs_enough_room_for_fat32_clusters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FAT32 needs at least"):
        build_fat_disk({"a.txt": "x"}, size_mib=16, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("builder", "label"),
    [(build_ntfs_disk, "x" * 33), (build_ext4_disk, "x" * 17), (build_fat_disk, "TOO LONG NAME")],
)
def test_labels_too_long_are_refused(builder, label: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label"):
        builder({"a.txt": "x"}, size_mib=SIZE_MIB, label=label, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Cache and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "builder", "tree"),
    [
        ("ntfs_image", build_ntfs_disk, WINDOWS),
        ("ext4_image", build_ext4_disk, LINUX),
        ("fat_image", build_fat_disk, WINDOWS),
    ],
)
def test_second_build_is_a_cache_hit(request, fixture: str, builder, tree: Mapping, image_cache: Path) -> None:
    first = request.getfixturevalue(fixture)
    assert first.parent == image_cache
    stamp = first.stat().st_mtime_ns

    started = time.perf_counter()
    second = builder(tree, size_mib=SIZE_MIB)
    assert time.perf_counter() - started < 0.5
    assert second == first
    assert second.stat().st_mtime_ns == stamp


def test_changed_content_gives_a_new_image(tmp_path: Path) -> None:
    first = build_ext4_disk({"etc": {"hostname": "a\n"}}, size_mib=16, cache_dir=tmp_path)
    second = build_ext4_disk({"etc": {"hostname": "b\n"}}, size_mib=16, cache_dir=tmp_path)
    assert first != second
    assert sorted(tmp_path.iterdir()) == sorted([first, second])


@pytest.mark.parametrize(
    ("builder", "size_mib", "blob_mib"),
    [
        # Clearly too big: refused before any tool runs.
        (build_ntfs_disk, 8, 14),
        (build_ext4_disk, 8, 14),
        (build_fat_disk, 36, 38),
        # Smaller than the partition but not than the free space: the tool runs out of space.
        (build_ntfs_disk, 16, 13.5),
        (build_ext4_disk, 16, 14.5),
        (build_fat_disk, 40, 38.5),
    ],
)
def test_tree_too_large_gives_clear_error_and_no_cache_entry(
    builder, size_mib: int, blob_mib: float, tmp_path: Path
) -> None:
    tree = {"data": {"blob.bin": diskimages._noise("too-big", int(blob_mib * MIB))}}
    with pytest.raises(TreeTooLargeError, match="do not fit|files need"):
        builder(tree, size_mib=size_mib, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("builder", "package"),
    [(build_ntfs_disk, "ntfs-3g"), (build_ext4_disk, "e2fsprogs"), (build_fat_disk, "dosfstools")],
)
def test_missing_tool_names_the_debian_package(
    builder, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(diskimages, "EXTRA_TOOL_DIRS", ())
    with pytest.raises(MissingToolError, match=f"install the Debian package '{package}'"):
        builder({"a.txt": "x"}, size_mib=SIZE_MIB, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_cached_image_needs_no_tools(ext4_image: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(diskimages, "EXTRA_TOOL_DIRS", ())
    assert build_ext4_disk(LINUX, size_mib=SIZE_MIB, label="linux-root") == ext4_image


# ---------------------------------------------------------------------------------------------
# VMDK descriptor
# ---------------------------------------------------------------------------------------------


def descriptor_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip().strip('"')
    return fields


def test_vmdk_descriptor_for_a_scsi_disk() -> None:
    text = vmdk_descriptor("web01-flat.vmdk", 64 * MIB)
    assert text.startswith("# Disk DescriptorFile\n")
    assert 'RW 131072 VMFS "web01-flat.vmdk"\n' in text
    fields = descriptor_fields(text)
    assert fields["version"] == "1"
    assert fields["parentCID"] == "ffffffff"
    assert fields["createType"] == "vmfs"
    assert len(fields["CID"]) == 8 and int(fields["CID"], 16) >= 0
    assert fields["ddb.adapterType"] == "lsilogic"
    assert (fields["ddb.geometry.heads"], fields["ddb.geometry.sectors"]) == ("255", "63")
    assert fields["ddb.geometry.cylinders"] == str(131072 // (255 * 63))
    assert fields["ddb.virtualHWVersion"].isdigit()
    assert vmdk_descriptor("web01-flat.vmdk", 64 * MIB) == text


def test_vmdk_descriptor_for_an_ide_disk_uses_16_heads() -> None:
    fields = descriptor_fields(vmdk_descriptor("d-flat.vmdk", 10 * 1024 * MIB, adapter_type="ide"))
    assert fields["ddb.adapterType"] == "ide"
    assert (fields["ddb.geometry.heads"], fields["ddb.geometry.cylinders"]) == ("16", "16383")


@pytest.mark.parametrize(
    ("name", "size", "adapter"),
    [('a"b-flat.vmdk', MIB, "lsilogic"), ("d-flat.vmdk", 1000, "lsilogic"), ("d-flat.vmdk", MIB, "nvme")],
)
def test_vmdk_descriptor_rejects_bad_input(name: str, size: int, adapter: str) -> None:
    with pytest.raises(ValueError):
        vmdk_descriptor(name, size, adapter_type=adapter)
