"""recovery.filesystems on damaged and unusual volumes (garbage, a destroyed MFT, special partitions,
no partition table), and on XFS and LVM."""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess

import pytest

from recovery.filesystems import (
    DamagedFileSystem,
    NotBrowsable,
    NotFound,
    open_disk,
)
from tests.recovery.disk_images import (
    BIG,
    MIB,
    PART_START,
    build,
    copy_partition,
    open_image,
    sha256,
    splice,
    streamed_sha256,
    tool,
)
from tools import diskimages

# --------------------------------------------------------------------------------------------
# Damaged and unusual volumes
# --------------------------------------------------------------------------------------------


def test_volume_with_garbage_first_sectors_is_not_browsable(ntfs_image, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    splice(random.Random(1).randbytes(16 * 512), disk, PART_START)
    layout = open_image(disk)
    [volume] = layout.volumes
    assert not volume.browsable and volume.fs_type is None
    assert volume.reason.startswith("unknown file system (first bytes ")
    with pytest.raises(NotBrowsable, match="unknown file system"):
        layout.filesystem(1)


def test_ntfs_with_a_destroyed_mft_is_reported_damaged(ntfs_image, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    with disk.open("rb") as handle:
        handle.seek(PART_START)
        boot = handle.read(512)
    cluster = struct.unpack_from("<H", boot, 11)[0] * boot[13]
    mft_offset = struct.unpack_from("<Q", boot, 48)[0] * cluster
    splice(b"\xa5" * 64 * 1024, disk, PART_START + mft_offset)
    [volume] = open_image(disk).volumes
    assert not volume.browsable and volume.reason.startswith("damaged NTFS: ")


def test_damaged_folder_index_raises_instead_of_listing_empty(ntfs_image, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    fs = open_image(disk).filesystem(1)
    record = fs._ntfs.mft.get("Users/alice/Documents")  # find the folder's index buffer, then wreck it
    [(lcn, _count)] = record.index("$I30")._index_stream.runlist
    splice(b"\xff" * 4096, disk, PART_START + lcn * fs._ntfs.cluster_size)
    fs = open_image(disk).filesystem(1)
    with pytest.raises(DamagedFileSystem, match="Documents"):
        fs.list_dir("/Users/alice/Documents")
    assert [e.name for e in fs.list_dir("/Users/alice")] == ["Desktop", "Documents", "Pictures", "Videos"]


def test_damaged_mft_record_still_listed_from_the_folder_index(ntfs_image, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    fs = open_image(disk).filesystem(1)
    record = fs._ntfs.mft.get("Users/alice/Documents")
    [(mft_lcn, _count), *_rest] = fs._ntfs.mft.fh.runlist
    splice(b"\xff" * 1024, disk, PART_START + mft_lcn * fs._ntfs.cluster_size + record.segment * 1024)
    fs = open_image(disk).filesystem(1)
    documents = [e for e in fs.list_dir("/Users/alice") if e.name == "Documents"]
    assert [(e.is_dir, e.owner) for e in documents] == [(True, None)]  # from $I30's copy of $FILE_NAME
    with pytest.raises(DamagedFileSystem):
        fs.list_dir("/Users/alice/Documents")


def test_special_partitions_each_get_a_reason_and_the_efi_partition_is_browsable(tmp_path):
    sfdisk, mkfs_vfat = tool("sfdisk"), tool("mkfs.vfat")
    efi = tmp_path / "efi.img"
    with efi.open("wb") as handle:
        handle.truncate(2 * MIB)
    subprocess.run([mkfs_vfat, "-n", "SYSTEM", str(efi)], check=True, capture_output=True)
    disk = tmp_path / "disk.img"
    with disk.open("wb") as handle:
        handle.truncate(12 * MIB)
    kinds = [
        ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", b""),  # Microsoft reserved, empty
        ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", bytes(4086) + b"SWAPSPACE2"),
        ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", b"\xebR\x90-FVE-FS-" + bytes(499) + b"\x55\xaa"),
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", b"LUKS\xba\xbe\x00\x02"),
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", b"just some text, no file system here\n" * 10),
        ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", b""),
    ]
    lines = [f"start={2048 * (i + 1)}, size=2048, type={kind}" for i, (kind, _data) in enumerate(kinds)]
    lines.append("start=14336, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    script = "label: gpt\nunit: sectors\n\n" + "\n".join(lines) + "\n"
    subprocess.run([sfdisk, "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], input=script.encode(), check=True)
    for i, (_kind, data) in enumerate(kinds):
        splice(data, disk, MIB * (i + 1))
    splice(efi, disk, 7 * MIB)

    layout = open_image(disk)
    *special, esp = layout.volumes
    assert [v.index for v in layout.volumes] == [1, 2, 3, 4, 5, 6, 7]
    assert not any(v.browsable for v in special)
    assert (esp.partition_type, esp.fs_type, esp.label, esp.browsable, esp.reason) == (
        "EFI system",
        "fat12",
        "SYSTEM",
        True,
        "",
    )
    assert layout.filesystem(7).list_dir("/") == []
    with pytest.raises(NotFound):
        layout.volume(8)
    assert [(v.partition_type, v.reason) for v in special] == [
        ("Microsoft reserved", "Microsoft reserved partition: holds no files"),
        ("Linux swap", "swap space: holds no files"),
        ("Basic data", "encrypted with BitLocker: cannot be browsed"),
        ("Linux", "encrypted with LUKS: cannot be browsed"),
        ("Linux", "unknown file system (first bytes 6a 75 73 74 20 73 6f 6d 65 20 74 65 78 74 2c 20)"),
        ("Basic data", "empty: holds no file system (all zeros)"),
    ]


def test_disk_without_partition_table_or_file_system_is_one_unbrowsable_volume():
    for content, reason in (
        (bytes(MIB), "empty disk: no partition table and no file system"),
        (b"\x01\x02" * (MIB // 2), "no partition table, and unknown file system (first bytes 01 02"),
    ):
        layout = open_disk(io.BytesIO(content), MIB)
        [volume] = layout.volumes
        assert (layout.scheme, volume.browsable, volume.size) == ("unknown", False, MIB)
        assert volume.reason.startswith(reason)


# --------------------------------------------------------------------------------------------
# XFS and LVM
# --------------------------------------------------------------------------------------------


def test_raw_xfs_disk_lists_names_owners_symlinks_and_streams(tmp_path):
    mkfs = tool("mkfs.xfs")
    source = tmp_path / "src"
    source.mkdir()
    (source / "hosts").write_text("127.0.0.1 localhost\n")
    (source / "big").write_bytes(BIG)
    (source / "empty").write_bytes(b"")
    # mkfs.xfs prototype files: name, type+mode, uid, gid, source; "$" closes a folder.
    proto = tmp_path / "proto"
    proto.write_text(
        f"/dev/null\n0 0\nd--755 0 0\n"
        f"etc d--755 0 0\nhosts ---644 0 0 {source / 'hosts'}\n$\n"
        f"home d--755 0 0\nbob d--750 1000 1000\n"
        f"Zoë.txt ---644 1000 1000 {source / 'hosts'}\n報告書.txt ---600 1000 1000 {source / 'hosts'}\n"
        f"video.bin ---644 1000 1000 {source / 'big'}\nempty ---644 1000 1000 {source / 'empty'}\n"
        f"hosts-link l--777 1000 1000 /etc/hosts\n$\n$\n$\n",
        encoding="utf-8",
    )
    image = tmp_path / "xfs.img"
    with image.open("wb") as handle:
        handle.truncate(32 * MIB)
    # xfsprogs refuses file systems under 300 MB unless it believes it runs under fstests.
    env = {**os.environ, "TEST_DIR": str(tmp_path), "TEST_DEV": str(image), "QA_CHECK_FS": "1"}
    subprocess.run([mkfs, "-q", "-f", "-L", "srv-data", "-p", str(proto), str(image)], check=True, env=env)

    layout = open_image(image)
    [volume] = layout.volumes
    assert (layout.scheme, volume.fs_type, volume.label, volume.browsable) == ("none", "xfs", "srv-data", True)
    fs = layout.filesystem(1)
    bob = fs.list_dir("/home/bob")
    assert [e.name for e in bob] == ["empty", "hosts-link", "video.bin", "Zoë.txt", "報告書.txt"]
    link = bob[1]
    assert (link.is_symlink, link.symlink_target, link.owner) == (True, "/etc/hosts", "uid 1000")
    assert bob[0].created is not None and bob[0].modified is not None  # v5 inodes record creation
    assert streamed_sha256(fs.open("/home/bob/video.bin"))[0] == sha256(BIG)
    assert fs.open("/home/bob/報告書.txt").read() == b"127.0.0.1 localhost\n"
    assert fs.open("/home/bob/empty").read() == b""


def test_lvm_logical_volumes_are_volumes_of_their_own(tmp_path):
    small = build(diskimages.build_ext4_disk, {"etc": {"hostname": "db01\n"}}, size_mib=12, label="lv-root")
    ext4 = copy_partition(small, tmp_path / "root.img").read_bytes()
    extent = MIB
    root_extents = len(ext4) // extent
    pv = _lvm_physical_volume(
        vg="vg0",
        pv_uuid="Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0Kk",
        extent_sectors=extent // 512,
        logical_volumes={
            "root": [("pv0", 0, root_extents)],
            "data": [("pv0", root_extents, 2), ("pv1", 0, 4)],  # partly on a disk we do not have
            "pool": None,  # a thin pool holds thin volumes, not a file system
        },
        data=ext4,
    )
    disk = tmp_path / "disk.img"
    disk.write_bytes(_mbr([(0x8E, MIB, len(pv))]) + bytes(MIB - 512) + pv)

    layout = open_image(disk)
    pv_volume, root, data, pool = layout.volumes
    assert (pv_volume.partition_type, pv_volume.browsable) == ("Linux LVM", False)
    assert "volume group 'vg0'" in pv_volume.reason
    assert (root.index, root.name, root.fs_type, root.label, root.browsable) == (2, "vg0/root", "ext4", "lv-root", True)
    assert root.offset == 2 * MIB and root.size == root_extents * extent
    assert layout.filesystem(2).open("/etc/hostname").read() == b"db01\n"
    assert (data.name, data.browsable) == ("vg0/data", False)
    assert data.reason.startswith("LVM logical volume lies partly on another disk")
    assert (pool.name, pool.reason) == ("vg0/pool", "LVM thin pool: its thin volumes are listed separately")


def _mbr(partitions: list[tuple[int, int, int]]) -> bytes:
    entries = b"".join(struct.pack("<B3xB3xII", 0, kind, start // 512, size // 512) for kind, start, size in partitions)
    return bytes(446) + entries.ljust(64, b"\0") + b"\x55\xaa"


def _lvm_physical_volume(*, vg: str, pv_uuid: str, extent_sectors: int, logical_volumes: dict, data: bytes) -> bytes:
    """An LVM2 physical volume (label, one metadata area, data from 1 MiB) holding one volume group."""
    data_start = MIB
    dashed = "-".join((pv_uuid[:6], pv_uuid[6:10], pv_uuid[10:14], pv_uuid[14:18], pv_uuid[18:22], pv_uuid[22:26]))
    dashed += "-" + pv_uuid[26:]
    pe_count = len(data) // (extent_sectors * 512) + 2
    volumes = []
    for name, segments in logical_volumes.items():
        if segments is None:
            body = 'segment1 {\nstart_extent = 0\nextent_count = 1\ntype = "thin-pool"\nmetadata = "pool_tmeta"\n'
            body += 'pool = "pool_tdata"\ntransaction_id = 0\nchunk_size = 128\n}\n'
            volumes.append(f'{name} {{\nid = "x"\nstatus = ["READ", "WRITE", "VISIBLE"]\nflags = []\n')
            volumes.append(f"segment_count = 1\n{body}}}\n")
            continue
        body, start = "", 0
        for number, (pv, first, count) in enumerate(segments, 1):
            body += f'segment{number} {{\nstart_extent = {start}\nextent_count = {count}\ntype = "striped"\n'
            body += f'stripe_count = 1\nstripes = [\n"{pv}", {first}\n]\n}}\n'
            start += count
        volumes.append(f'{name} {{\nid = "x"\nstatus = ["READ", "WRITE", "VISIBLE"]\nflags = []\n')
        volumes.append(f"segment_count = {len(segments)}\n{body}}}\n")
    metadata = (
        f'{vg} {{\nid = "vgid"\nseqno = 1\nformat = "lvm2"\nstatus = ["RESIZEABLE", "READ", "WRITE"]\nflags = []\n'
        f"extent_size = {extent_sectors}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n"
        f'physical_volumes {{\npv0 {{\nid = "{dashed}"\ndevice = "/dev/sda1"\nstatus = ["ALLOCATABLE"]\n'
        f"flags = []\npe_start = {data_start // 512}\npe_count = {pe_count}\n}}\n"
        f'pv1 {{\nid = "other-disk-pv"\ndevice = "/dev/sdb"\nstatus = ["ALLOCATABLE"]\nflags = []\n'
        f"pe_start = 2048\npe_count = 100\n}}\n}}\n"
        f"logical_volumes {{\n{''.join(volumes)}}}\n}}\n"
        f'contents = "Text Format Volume Group"\nversion = 1\ndescription = ""\n'
    ).encode()
    pv_size = data_start + pe_count * extent_sectors * 512
    label = b"LABELONE" + struct.pack("<QII", 1, 0, 32) + b"LVM2 001"
    header = pv_uuid.encode() + struct.pack("<Q", pv_size)
    header += struct.pack("<QQQQ", data_start, 0, 0, 0) + struct.pack("<QQQQ", 4096, data_start - 4096, 0, 0)
    mda = struct.pack("<I16sIQQ", 0, b" LVM2 x[5A%r0N*>", 1, 4096, data_start - 4096)
    mda += struct.pack("<QQII", 512, len(metadata) + 1, 0, 0) + bytes(24)
    out = bytearray(pv_size)
    out[512 : 512 + len(label) + len(header)] = label + header
    out[4096 : 4096 + len(mda)] = mda
    out[4096 + 512 : 4096 + 512 + len(metadata)] = metadata
    out[data_start : data_start + len(data)] = data
    return bytes(out)
