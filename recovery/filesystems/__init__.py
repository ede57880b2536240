"""Read the file systems inside a recovery point's disk image, for file-level restore (plain Python, no Django).

`open_disk(fileobj, size)` finds the volumes of a disk (GPT or MBR partitions, LVM2 logical volumes, or
one file system written straight onto the disk) and `DiskLayout.filesystem(index)` returns a
`FileSystem` that lists, searches and streams files with one API over NTFS, ext2/3/4, FAT12/16/32
and XFS. The disk is any seekable binary file object: a raw image, or `vault.engine.DiskReader`,
which reads a recovery point's chunks on demand.

The package, one idea a module (callers import from here only):

- `errors`: what is raised on purpose, and how dissect's own errors become `DamagedFileSystem`.
- `paths`: path rules (`split_path`, `join_path`).
- `base`: `Entry` and the `FileSystem` base class, whose public methods are written once.
- `sniff`: what a volume is, judged by its signatures before any parser sees it.
- `layout`: partition tables, LVM, `Volume`, `DiskLayout` and `open_disk`.
- one adapter per file system: `ntfs` (with `sid_name`), `inode` (what ext and XFS share), `ext`,
  `xfs`, `fat`.

Rules this package keeps, so callers (views, restore jobs) need not think about them:

- Nothing a damaged or unusual disk holds makes `open_disk` raise: every volume gets `browsable`
  and, when it is False, a `reason` sentence for people ("encrypted with BitLocker: cannot be
  browsed"). Volumes are recognised by their signatures before dissect parses them, and every
  exception dissect raises while opening one becomes "damaged NTFS: ..." and the like. Later
  errors while listing or reading a damaged structure surface as `DamagedFileSystem`.
- Paths are '/'-separated and absolute ("/Users/alice"); "" and "/" are the root. A ".." segment
  or a NUL raises ValueError, so no path escapes the root, whatever a URL carries. Missing paths
  raise `NotFound` (a FileNotFoundError), listing a file raises `NotADirectory`, opening a folder
  or a symbolic link raises `NotAFile`.
- Listings are sorted folders first, then by name case-insensitively. "." and "..", NTFS 8.3 (DOS)
  aliases and the NTFS metadata files at the root ($MFT, $Bitmap, $Extend, ...) are left out;
  hidden files are kept (and flagged). NTFS and FAT look names up case-insensitively, as Windows
  does; ext and XFS exactly.
- Names are text, reversibly: every name and path given out (Entry.name, Entry.path, symlink
  targets, labels, error messages) is escaped by `recovery.names`, so it is valid UTF-8 with no
  control characters: ext/XFS bytes that are not UTF-8 become "\\xNN" (latin-1 b"caf\\xe9" is
  shown as "caf\\xe9"), control characters "\\x0a", NTFS unpaired surrogates "\\udc80", and a
  real backslash "\\\\". Paths given in are unescaped before lookup, so the shown name opens the
  file; `recovery.names.original_bytes(name)` gives the bytes to write on Linux.
- Symbolic links (and NTFS junctions) are listed with their target and never followed, neither
  in paths nor by `walk`/`find`. Hard links show up under each of their names. NTFS alternate
  data streams are ignored: `open` reads the unnamed $DATA stream.
- `open` streams: it returns a seekable file object that reads the extents a read() asks for,
  never the whole file at once. Its reads go through the disk file object, which is shared by
  every stream of the same disk: use a disk, its file systems and their streams from one thread.
- Listing touches metadata only; file data is read only by `open`. NTFS: the folder's $I30 index,
  then one 1 KiB MFT record per entry (`ntfs` says how that stays cheap). ext/XFS: the directory
  blocks, then each entry's inode. FAT: the folder's clusters only. Opening a volume reads its
  boot sector or superblock and, for NTFS, a little more (`ntfs` gives the figures).
- `walk` and `find` visit each folder once (by `Entry.file_id`), so a damaged folder entry that
  points back at an ancestor cannot make them loop; a looping FAT cluster chain raises instead.
- Times are aware UTC datetimes, or None when the file system does not record one (or records
  zero). FAT records local time without a zone: its times are shown as if they were UTC.
- Owners: NTFS gives the owner SID ("S-1-5-21-...-1001", `owner_name` "Administrators" for the
  well-known ones); ext and XFS give "uid 1000" (`owner_name` "root" for uid 0); FAT has none.
"""

from __future__ import annotations

from .base import Entry, FileSystem
from .errors import DamagedFileSystem, FileSystemError, NotADirectory, NotAFile, NotBrowsable, NotFound
from .layout import DiskLayout, Volume, open_disk
from .ntfs import sid_name
from .paging import Page
from .paths import split_path

__all__ = [
    "DamagedFileSystem",
    "DiskLayout",
    "Entry",
    "FileSystem",
    "FileSystemError",
    "NotADirectory",
    "NotAFile",
    "NotBrowsable",
    "NotFound",
    "Page",
    "Volume",
    "open_disk",
    "sid_name",
    "split_path",
]
