"""recovery.filesystems: volumes and files of real disk images (NTFS, ext4, FAT), read directly and
through the vault's DiskReader; searching, walking and paths. Damaged and unusual volumes, XFS and
LVM are in test_filesystems_unusual.py."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from recovery import names
from recovery.filesystems import (
    NotADirectory,
    NotAFile,
    NotFound,
    open_disk,
    sid_name,
)
from tests.recovery.disk_images import (
    BIG,
    FIXED,
    GERMAN,
    JAPANESE,
    MIB,
    PART_START,
    copy_partition,
    open_image,
    sha256,
    splice,
    streamed_sha256,
    tool,
)
from tools import diskimages
from vault.engine import DiskReader, FileSource, Store, backup_disk

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

    # A latin-1 name: shown escaped (recovery.names), opened by that same str, bytes recoverable.
    [odd] = [e for e in fs.list_dir("/home/bob") if e.name.startswith("caf")]
    assert odd.name == "caf\\xe9.txt"
    assert names.original_bytes(odd.name) == b"caf\xe9.txt"
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
