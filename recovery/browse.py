"""Opening a recovery point's disks and file systems for browsing, downloads and search.

Nothing is materialised: a `DiskReader` reads the point's chunks on demand (local store first, then
the vault), and `recovery.filesystems` parses partitions and file systems through it. Each request
opens what it needs (a few metadata chunks, well under a second); a download gets a reader of its
own, because a disk reader is not shared between threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast, overload

from recovery import filesystems as fs
from recovery import folder_index
from recovery.zipstream import ZipItem
from vault import archive, engine
from vault.models import RecoveryPoint, RecoveryPointDisk
from vault.storage import local_store, vault_if_configured

ITEM_SEPARATOR = ":"


class PointUnavailable(Exception):
    """The point cannot be read now (archived in the vault, missing); the message says why."""


class PointArchived(PointUnavailable):
    """Chunks of a point only the vault holds are in the Archive tier: reading waits for a
    rehydration someone asks for (the page offers it; looking never starts one)."""

    def __init__(self, point: RecoveryPoint, notice: archive.ArchiveNotice) -> None:
        counted = f"{notice.archived} chunk(s)" if notice.archived is not None else "Chunks"
        super().__init__(
            f"{counted} of this recovery point are in the vault's Archive tier: it can be browsed and restored "
            "once they are rehydrated."
        )
        self.point = point
        self.notice = notice


@dataclass(frozen=True)
class Item:
    """A selected file or folder: disk key, volume index, path. Serialised as "2000:1:/Users/a"."""

    disk: int
    volume: int
    path: str

    def __str__(self) -> str:
        return f"{self.disk}{ITEM_SEPARATOR}{self.volume}{ITEM_SEPARATOR}{self.path}"

    @classmethod
    def parse(cls, text: str) -> Item:
        disk, volume, path = text.split(ITEM_SEPARATOR, 2)
        fs.split_path(path)  # ValueError for ".." or NUL before anything is opened
        return cls(int(disk), int(volume), path or "/")


@dataclass
class DiskView:
    disk: RecoveryPointDisk
    layout: fs.DiskLayout | None
    error: str = ""


class _WatchedSource(engine.TieredStore):
    """The tiered store, noting whether a read met an archived chunk: dissect turns a failed read
    into a volume that is "not browsable" or a damaged folder, which would hide the real reason."""

    met_archive = False

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        try:
            return super().read_chunk(digest, length, verify=verify)
        except engine.BlobArchived:
            self.met_archive = True
            raise


def check_archive(point: RecoveryPoint) -> None:
    """Raise PointArchived when the point's cached archive state says its chunks cannot be read.
    Never lists the vault and never starts a rehydration (see vault.archive)."""
    notice = archive.notice(point)
    if notice is not None:
        raise PointArchived(point, notice)


def _source(point: RecoveryPoint) -> _WatchedSource:
    check_archive(point)
    return _WatchedSource(local_store(), vault_if_configured())


def _archived(point: RecoveryPoint) -> PointArchived:
    archive.note_archived_read(point)
    notice = archive.notice(point)
    assert notice is not None  # just noted
    return PointArchived(point, notice)


def _open_layout(point: RecoveryPoint, disk_key: int) -> tuple[_WatchedSource, fs.DiskLayout]:
    source = _source(point)
    try:
        index = source.open_point(str(point.pk)).index(str(disk_key))
    except (engine.StoreError, engine.BackendError, KeyError) as exc:
        raise PointUnavailable(f"Disk {disk_key} of this recovery point cannot be read: {exc}") from None
    try:
        layout = fs.open_disk(disk_file(source, index, cache_chunks=16), index.image_size)
    except (engine.StoreError, engine.BackendError):
        if source.met_archive:
            raise _archived(point) from None
        raise
    if source.met_archive:
        raise _archived(point)
    return source, layout


def open_layout(point: RecoveryPoint, disk_key: int) -> fs.DiskLayout:
    return _open_layout(point, disk_key)[1]


def list_folder(point: RecoveryPoint, disk_key: int, volume: int, path: str, page: int) -> fs.Page:
    """One page (1 for the first) of a folder's sorted listing: see recovery.filesystems.paging."""
    source, layout = _open_layout(point, disk_key)
    offset = (max(1, page) - 1) * fs.Page.SIZE
    try:
        listing = FolderListing(point, disk_key, volume, layout.filesystem(volume), path)
        page_of = listing.page(offset, fs.Page.SIZE)
        if not page_of.entries and offset >= page_of.total > 0:  # past the end (an old link): the last page
            page_of = listing.page((page_of.count - 1) * fs.Page.SIZE, fs.Page.SIZE)
    except (fs.FileSystemError, engine.StoreError, engine.BackendError) as exc:
        if source.met_archive:
            raise _archived(point) from None
        if isinstance(exc, fs.FileSystemError):
            raise
        raise PointUnavailable(str(exc)) from None
    if source.met_archive:
        raise _archived(point)
    return page_of


def disk_file(source: engine.TieredStore, index: engine.DiskIndex, *, cache_chunks: int = 8) -> BinaryIO:
    """A disk of a point as a read-only, seekable binary file whose chunks are read as needed."""
    reader = engine.DiskReader(source, index, cache_chunks=cache_chunks)
    # A DiskReader is an io.RawIOBase, a binary file object; typing.BinaryIO is a nominal class the io
    # classes do not derive from, so mypy cannot see that it is one.
    return cast(BinaryIO, reader)


class FolderListing(Sequence[fs.Entry]):
    """A folder's sorted entries for a paginator (Django's, so DRF's, takes len() and one slice), read
    through the folder's listing index when the catalog wrote one (recovery.folder_index), else live:
    the length reads names only, a slice reads metadata for its entries only (`list_page`)."""

    def __init__(self, point: RecoveryPoint, disk_key: int, volume: int, filesystem: fs.FileSystem, path: str) -> None:
        self.filesystem = filesystem
        self.path = path
        self._indexed = folder_index.find(point.pk, disk_key, volume, path)
        self._total: int | None = None if self._indexed is None else self._indexed.total

    def page(self, offset: int, limit: int) -> fs.Page:
        if self._indexed is not None:
            indexed = self._indexed.page(self.filesystem, offset, limit)
            if indexed is not None:
                return indexed
        page = self.filesystem.list_page(self.path, offset, limit)
        self._total = page.total
        return page

    def __len__(self) -> int:
        if self._total is None:
            self._total = self.page(0, 0).total
        return self._total

    @overload
    def __getitem__(self, index: int) -> fs.Entry: ...

    @overload
    def __getitem__(self, index: slice) -> list[fs.Entry]: ...

    def __getitem__(self, index: int | slice) -> fs.Entry | list[fs.Entry]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a folder listing is sliced in order")
            return self.page(start, max(0, stop - start)).entries
        position = index + len(self) if index < 0 else index
        entries = self.page(position, 1).entries if position >= 0 else []
        if not entries:
            raise IndexError(index)
        return entries[0]


def point_disks(point: RecoveryPoint) -> list[DiskView]:
    """`disk_views` for the point's page: PointArchived (for the whole point, so the page can offer
    the rehydration) when its chunks are archived, known before or found while opening the disks."""
    check_archive(point)
    views = disk_views(point)
    check_archive(point)  # a read may have met an archived chunk the cache did not know of
    return views


def disk_views(point: RecoveryPoint) -> list[DiskView]:
    """Each disk's volumes, or why it cannot be read (an archived point's disks say so)."""
    views = []
    for disk in point.disks.all():
        try:
            views.append(DiskView(disk, open_layout(point, disk.key)))
        except (PointUnavailable, engine.StoreError, engine.BackendError) as exc:
            views.append(DiskView(disk, None, str(exc)))
    return views


def open_filesystem(point: RecoveryPoint, disk_key: int, volume: int) -> fs.FileSystem:
    try:
        return open_layout(point, disk_key).filesystem(volume)
    except (engine.StoreError, engine.BackendError) as exc:
        raise PointUnavailable(str(exc)) from None


def expand(point: RecoveryPoint, items: list[Item]) -> Iterator[tuple[ZipItem, int]]:
    """The zip entries of a selection (folders walked), each with its size. Opens one reader per
    disk for the whole archive; names are the paths from the volume root, prefixed by the volume
    when the selection spans several."""
    volumes = {(i.disk, i.volume) for i in items}
    prefix_needed = len(volumes) > 1
    systems: dict[tuple[int, int], fs.FileSystem] = {}
    for item in items:
        key = (item.disk, item.volume)
        if key not in systems:
            systems[key] = open_filesystem(point, item.disk, item.volume)
        filesystem = systems[key]
        prefix = f"disk{item.disk}-volume{item.volume}/" if prefix_needed else ""
        entry = filesystem.stat(item.path)
        if entry.is_symlink:
            yield _link_item(prefix, entry), 0
            continue
        if not entry.is_dir:
            yield _zip_item(filesystem, prefix, entry), entry.size
            continue
        yield ZipItem(prefix + entry.path, None, entry.modified), 0
        unreadable: list[fs.FileSystemError] = []
        for _folder, entries in filesystem.walk(entry.path, onerror=unreadable.append):
            for child in entries:
                if child.is_symlink:
                    yield _link_item(prefix, child), 0  # listed in the restore report, never followed
                elif child.is_dir:
                    yield ZipItem(prefix + child.path, None, child.modified), 0
                else:
                    yield _zip_item(filesystem, prefix, child), child.size
        for error in unreadable:  # a damaged subfolder: listed in the restore report, not dropped silently
            why = f"folder cannot be read, its files are missing: {error}"
            yield ZipItem(prefix + error.path, None, skipped=why), 0


def _link_item(prefix: str, entry: fs.Entry) -> ZipItem:
    why = f"symbolic link to {entry.symlink_target}, not followed"
    return ZipItem(prefix + entry.path, None, entry.modified, skipped=why)


def _zip_item(filesystem: fs.FileSystem, prefix: str, entry: fs.Entry) -> ZipItem:
    return ZipItem(prefix + entry.path, lambda: filesystem.open(entry.path), entry.modified)
