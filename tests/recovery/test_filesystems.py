"""recovery.filesystems: volumes and files of real disk images (NTFS, ext4, FAT, XFS, LVM), read
directly and through the vault's DiskReader, plus damaged and unusual volumes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recovery.filesystems import (
    DamagedFileSystem,
    DiskLayout,
    NotADirectory,
    NotAFile,
    NotBrowsable,
    NotFound,
    open_disk,
    sid_name,
)
from tests.factories.images import TOOL_DIRS, TOOL_PACKAGES
from tools import diskimages
from vault.engine import DiskReader, FileSource, Store, backup_disk

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


@pytest.fixture(scope="module")
def ntfs_image() -> Path:
    return build(diskimages.build_ntfs_disk, windows_tree(), size_mib=40, label="Windows")


@pytest.fixture(scope="module")
def ext4_image() -> Path:
    return build(diskimages.build_ext4_disk, linux_tree(), size_mib=40, label="web01-root")


@pytest.fixture(scope="module")
def fat_image() -> Path:
    return build(diskimages.build_fat_disk, fat_tree(), size_mib=40, label="ESP")


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


# --------------------------------------------------------------------------------------------
# NTFS on GPT
# --------------------------------------------------------------------------------------------


def test_gpt_ntfs_disk_has_one_browsable_volume_with_label_and_type(ntfs_image):
    layout = open_image(ntfs_image)
    assert layout.scheme == "gpt"
    [volume] = layout.volumes
    assert (volume.index, volume.offset, volume.fs_type, volume.label) == (1, PART_START, "ntfs", "Windows")
    assert volume.partition_type == "NTFS basic data" and volume.name == "Basic data partition"
    assert volume.browsable and volume.reason == ""
    # dissect counts GPT sizes one sector short; ours spans first_lba..last_lba inclusive
    assert volume.size == ntfs_image.stat().st_size - PART_START - MIB


def test_ntfs_root_lists_folders_first_without_metadata_files(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    root = fs.list_dir("/")
    assert [e.name for e in root] == ["Program Files", "Users", "Windows", "Empty.txt"]
    assert [e.path for e in root][:2] == ["/Program Files", "/Users"]
    assert all(not e.name.startswith("$") for e in root)
    with pytest.raises(NotFound):
        fs.stat("/$MFT")  # metadata files cannot be reached by name either


def test_ntfs_nested_folders_times_and_owner(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    docs = fs.list_dir("/Users/alice/Documents")
    assert [e.name for e in docs] == [
        "Überweisungen",
        "プロジェクト",
        "Budget 2024.csv",
        "Meeting notes.txt",
        GERMAN,
        JAPANESE,
    ]
    budget = fs.stat("/Users/alice/Documents/Budget 2024.csv")
    assert budget.size == len(diskimages.sample_windows_tree()["Users"]["alice"]["Documents"]["Budget 2024.csv"])
    assert budget.modified == FIXED and budget.modified.tzinfo is not None
    assert budget.created is not None and not budget.is_dir and not budget.is_symlink
    # wimlib applies files with ntfs-3g's default descriptor, owned by Administrators
    assert (budget.owner, budget.owner_name) == ("S-1-5-32-544", "Administrators")
    assert budget.owner_display == "Administrators (S-1-5-32-544)"
    assert fs.stat("/").is_dir and fs.stat("/").path == "/"


def test_ntfs_listing_agrees_with_stat_for_every_entry(ntfs_image):
    # list_dir reads records with a fast struct path, stat through dissect's full parse.
    fs = open_image(ntfs_image).filesystem(1)
    listed = [entry for _folder, entries in fs.walk() for entry in entries]
    assert len(listed) == 30
    assert [fs.stat(entry.path) for entry in listed] == listed


def test_ntfs_names_are_case_insensitive_and_come_back_in_their_real_case(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    entry = fs.stat("/users/ALICE/documents/budget 2024.CSV")
    assert entry.path == "/Users/alice/Documents/Budget 2024.csv"


def test_ntfs_non_ascii_names_round_trip(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    for name, text in ((GERMAN, "Betrag: 42,00 €\r\n"), (JAPANESE, "四半期の報告\r\n")):
        path = f"/Users/alice/Documents/{name}"
        assert fs.stat(path).name == name
        assert fs.open(path).read() == text.encode()
    [project] = fs.list_dir("/Users/alice/Documents/プロジェクト")
    assert project.name == "議事録 2024-01.txt"


def test_ntfs_large_file_streams_in_pieces_byte_identical(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    path = "/Users/alice/Videos/Holiday 2023.mp4"
    assert fs.stat(path).size == len(BIG)
    stream = fs.open(path)
    assert streamed_sha256(stream) == (sha256(BIG), 256 * 1024)
    stream.seek(3 * MIB + 7)
    assert stream.read(100) == BIG[3 * MIB + 7 : 3 * MIB + 107]


def test_ntfs_empty_file_is_listed_and_reads_empty(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    empty = fs.stat("/Empty.txt")
    assert (empty.size, empty.is_dir) == (0, False)
    assert fs.open("/Empty.txt").read() == b""


def test_ntfs_owner_sids_from_security_descriptors(ntfs_image, tmp_path):
    audit = tool("ntfssecaudit")
    part = copy_partition(ntfs_image, tmp_path / "part.img", tail=MIB)
    user_sid = "S-1-5-21-1004336348-1177238915-682003330-1001"
    backup = tmp_path / "acl.txt"
    backup.write_text(f"File /Users/alice/Documents/{GERMAN}\n{_hex_dump(_descriptor(user_sid))}\n")
    subprocess.run([audit, "-s", str(part), str(backup)], check=True, capture_output=True)
    subprocess.run([audit, str(part), "644", "/Users/alice/Documents/Budget 2024.csv"], check=True, capture_output=True)
    disk = tmp_path / "disk.img"
    shutil.copyfile(ntfs_image, disk)
    splice(part, disk, PART_START)

    fs = open_image(disk).filesystem(1)
    german = fs.stat(f"/Users/alice/Documents/{GERMAN}")
    assert (german.owner, german.owner_name, german.owner_display) == (user_sid, None, user_sid)
    # ntfssecaudit stores the new descriptor in $Secure, so this owner comes by security id
    budget = fs.stat("/Users/alice/Documents/Budget 2024.csv")
    assert (budget.owner, budget.owner_name) == ("S-1-5-32-544", "Administrators")
    listed = fs.list_dir("/Users/alice/Documents")
    assert {e.name: e.owner for e in listed}[GERMAN] == user_sid
    assert [fs.stat(e.path) for e in listed] == listed


def test_well_known_sids_have_friendly_names():
    assert sid_name("S-1-5-18") == "SYSTEM"
    assert sid_name("S-1-5-32-544") == "Administrators"
    assert sid_name("S-1-5-21-1-2-3-500") == "Administrator"
    assert sid_name("S-1-5-21-1-2-3-1001") is None


def _descriptor(owner: str) -> bytes:
    """A self-relative security descriptor: the owner, its group, and a DACL granting Everyone."""

    def sid(text: str) -> bytes:
        _s, revision, authority, *subs = text.split("-")
        head = struct.pack("<BB", int(revision), len(subs)) + int(authority).to_bytes(6, "big")
        return head + b"".join(struct.pack("<I", int(sub)) for sub in subs)

    everyone = sid("S-1-1-0")
    ace = struct.pack("<BBHI", 0, 0, 8 + len(everyone), 0x1F01FF) + everyone
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(ace), 1, 0) + ace
    owner_sid, group_sid = sid(owner), sid(owner.rsplit("-", 1)[0] + "-513")
    header = struct.pack("<BBHIIII", 1, 0, 0x8004, 20 + len(dacl), 20 + len(dacl) + len(owner_sid), 0, 20)
    return header + dacl + owner_sid + group_sid


def _hex_dump(data: bytes) -> str:
    # The format ntfssecaudit -b writes and -s reads back.
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        words = " ".join(chunk[i : i + 4].hex() for i in range(0, len(chunk), 4))
        lines.append(f"        {start:06x}  {words}")
    return "Security key : 0x0\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# ext4 on MBR, raw ext4, symlinks and names that are not UTF-8
# --------------------------------------------------------------------------------------------


def test_mbr_ext4_disk_browses_like_ntfs(ext4_image):
    layout = open_image(ext4_image)
    [volume] = layout.volumes
    assert layout.scheme == "mbr"
    assert (volume.partition_type, volume.fs_type, volume.label, volume.browsable) == (
        "Linux",
        "ext4",
        "web01-root",
        True,
    )
    fs = layout.filesystem(1)
    assert [e.name for e in fs.list_dir("/")] == ["etc", "home", "lost+found", "srv", "var"]
    bob = fs.list_dir("/home/bob")
    assert [e.name for e in bob] == ["backups", "projects", ".bashrc", "notes.txt", GERMAN, JAPANESE]
    bashrc = bob[2]
    assert bashrc.hidden and (bashrc.owner, bashrc.owner_name) == ("uid 0", "root")
    assert bashrc.modified == FIXED
    assert fs.open(f"/home/bob/{GERMAN}").read() == "Betrag: 42,00 €\n".encode()
    assert fs.open(f"/home/bob/{JAPANESE}").read() == "四半期の報告\n".encode()
    assert streamed_sha256(fs.open("/srv/big.bin"))[0] == sha256(BIG)
    assert fs.stat("/etc/empty.conf").size == 0 and fs.open("/etc/empty.conf").read() == b""
    with pytest.raises(NotFound):
        fs.stat("/HOME")  # ext names are case-sensitive


def test_raw_ext4_without_partition_table_is_one_volume_with_symlinks_and_odd_names(ext4_image, tmp_path):
    debugfs = tool("debugfs")
    raw = copy_partition(ext4_image, tmp_path / "raw.img")
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"caf\xe9\n")
    script = tmp_path / "script.debugfs"
    script.write_bytes(
        b"symlink /home/bob/notes-link /home/bob/notes.txt\n"
        b"symlink /etc-link /etc\n"
        b"cd /home/bob\n"
        b"write " + str(source).encode() + b" caf\xe9.txt\n"
    )
    subprocess.run([debugfs, "-w", "-f", str(script), str(raw)], check=True, capture_output=True)

    layout = open_image(raw)
    assert layout.scheme == "none"
    [volume] = layout.volumes
    assert (volume.offset, volume.size, volume.fs_type, volume.browsable) == (0, raw.stat().st_size, "ext4", True)
    fs = layout.filesystem(1)
    link = fs.stat("/home/bob/notes-link")
    assert (link.is_symlink, link.symlink_target, link.is_dir, link.size) == (True, "/home/bob/notes.txt", False, 0)
    etc_link = fs.stat("/etc-link")
    assert etc_link.is_symlink and not etc_link.is_dir
    with pytest.raises(NotADirectory):
        fs.list_dir("/etc-link")  # links are not followed
    with pytest.raises(NotADirectory):
        fs.stat("/etc-link/hostname")
    with pytest.raises(NotAFile):
        fs.open("/home/bob/notes-link")

    # A latin-1 name: shown with surrogateescape, opened by that same str, bytes recoverable.
    [odd] = [e for e in fs.list_dir("/home/bob") if e.name.startswith("caf")]
    assert odd.name == "caf\udce9.txt"
    assert odd.name.encode("utf-8", "surrogateescape") == b"caf\xe9.txt"
    assert fs.open(odd.path).read() == b"caf\xe9\n"
    assert fs.find("CAF*", limit=5) == [odd]


# --------------------------------------------------------------------------------------------
# FAT
# --------------------------------------------------------------------------------------------


def test_fat_disk_lists_long_names_and_lower_case_short_names(fat_image):
    layout = open_image(fat_image)
    [volume] = layout.volumes
    assert (volume.partition_type, volume.fs_type, volume.label) == ("FAT32", "fat32", "ESP")
    fs = layout.filesystem(1)
    assert [e.name for e in fs.list_dir("/")] == [
        "EFI",
        "big.bin",
        "Empty.txt",
        "readme.txt",
        "README2.TXT",
        GERMAN,
        JAPANESE,
    ]
    readme = fs.stat("/README.TXT")  # case-insensitive, real case back
    assert (readme.path, readme.modified, readme.owner) == ("/readme.txt", FIXED, None)
    assert fs.open(f"/{GERMAN}").read() == "Betrag: 42,00 €\r\n".encode()
    assert fs.open(f"/{JAPANESE}").read() == "四半期の報告\r\n".encode()
    assert streamed_sha256(fs.open("/big.bin"))[0] == sha256(BIG[: 2 * MIB])
    assert fs.open("/Empty.txt").read() == b"" and fs.stat("/Empty.txt").size == 0
    assert [e.name for e in fs.list_dir("/efi/boot")] == ["BOOTX64.EFI"]


# --------------------------------------------------------------------------------------------
# Searching, walking, paths
# --------------------------------------------------------------------------------------------


def test_find_by_substring_or_glob_case_insensitively_and_stops_at_limit(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    assert [e.path for e in fs.find("HOLIDAY", limit=10)] == ["/Users/alice/Videos/Holiday 2023.mp4"]
    assert [e.name for e in fs.find("*.CSV", limit=10)] == ["Budget 2024.csv", "Januar 2024.csv"]
    assert [e.name for e in fs.find("zoë", limit=10)] == [GERMAN]
    assert len(fs.find("a", limit=3)) == 3
    assert fs.find("no such name", limit=10) == []
    assert [e.path for e in fs.find("*.log", limit=10, path="/Program Files")] == [
        "/Program Files/Contoso Backup Agent/Logs/agent-2024-01-15.log"
    ]


def test_walk_visits_every_folder_breadth_first(ext4_image):
    fs = open_image(ext4_image).filesystem(1)
    folders = [folder for folder, _entries in fs.walk("/home")]
    assert folders == ["/home", "/home/bob", "/home/bob/backups", "/home/bob/projects"]
    files = sum(len([e for e in entries if not e.is_dir]) for _folder, entries in fs.walk())
    assert files == 15


def test_paths_are_checked(ntfs_image):
    fs = open_image(ntfs_image).filesystem(1)
    for bad in ("/Users/../Windows", "..", "/Users/alice/..", "/Users\0/x"):
        with pytest.raises(ValueError):
            fs.list_dir(bad)
        with pytest.raises(ValueError):
            fs.open(bad)
    with pytest.raises(NotFound) as missing:
        fs.stat("/Users/bob")
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(NotFound):
        fs.list_dir("/Users/alice/nothing/here")
    with pytest.raises(NotADirectory):
        fs.list_dir("/Empty.txt")
    with pytest.raises(NotAFile):
        fs.open("/Users")
    assert fs.list_dir("Users") == fs.list_dir("/Users/") == fs.list_dir("//Users/./")


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


# --------------------------------------------------------------------------------------------
# Through the vault, and what a listing reads
# --------------------------------------------------------------------------------------------


def test_browsing_a_recovery_point_through_disk_reader(ntfs_image, tmp_path):
    store = Store(tmp_path / "store")
    with store.begin_point("vm-1.2024-01-15T0930") as pending, FileSource(ntfs_image) as source:
        backup_disk(pending, "scsi0:0", source)
        pending.commit({})
    reader = DiskReader(store, store.open_point("vm-1.2024-01-15T0930").index("scsi0:0"))

    layout = open_disk(reader, reader.size)
    assert [(v.fs_type, v.label, v.browsable) for v in layout.volumes] == [("ntfs", "Windows", True)]
    fs = layout.filesystem(1)
    assert [e.name for e in fs.list_dir("/Users/alice/Videos")] == ["Holiday 2023.mp4"]
    assert streamed_sha256(fs.open("/Users/alice/Videos/Holiday 2023.mp4"))[0] == sha256(BIG)
    assert fs.open(f"/Users/alice/Documents/{JAPANESE}").read() == "四半期の報告\r\n".encode()


class RecordingFile(io.RawIOBase):
    """A disk image file that remembers which byte ranges were read."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("rb", buffering=0)
        self.ranges: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        start = self._file.tell()
        n = self._file.readinto(buffer)
        self.ranges.append((start, start + n))
        return n


def test_listing_reads_metadata_only_never_file_data(ntfs_image):
    disk = RecordingFile(ntfs_image)
    fs = open_disk(disk, ntfs_image.stat().st_size).filesystem(1)
    fs.list_dir("/")
    fs.list_dir("/Users/alice/Videos")
    fs.stat("/Users/alice/Videos/Holiday 2023.mp4")
    assert sum(end - start for start, end in disk.ranges) < 512 * 1024

    # Where the big file's clusters are, per dissect: no read came near them.
    record = fs._ntfs.mft.get("Users/alice/Videos/Holiday 2023.mp4")
    cluster = fs._ntfs.cluster_size
    data = [(PART_START + lcn * cluster, PART_START + (lcn + count) * cluster) for lcn, count in record.dataruns()]
    assert sum(end - start for start, end in data) >= len(BIG)
    assert not any(start < d_end and d_start < end for start, end in disk.ranges for d_start, d_end in data)
