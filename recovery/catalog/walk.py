"""The listings of a real point: every browsable volume of every disk, walked breadth first.

Entries are produced lazily (the writer consumes them as the walk goes), so memory stays flat
whatever the volume holds. A folder that cannot be listed is skipped and counted; a volume that
cannot be opened is left out and named in the point's note."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from recovery import browse, folder_index
from recovery import filesystems as fs
from recovery.catalog.writer import CatalogEntry, VolumeListing
from vault.models import RecoveryPoint

log = logging.getLogger(__name__)

FolderSink = Callable[[str, list[fs.Entry]], None]


def point_listings(point: RecoveryPoint, problems: list[str]) -> Iterator[VolumeListing]:
    """The browsable volumes of `point` as listings; what could not be read is appended to `problems`."""
    for view in browse.disk_views(point):
        if view.layout is None:
            problems.append(f"disk {view.disk.key}: {view.error}")
            continue
        for volume in view.layout.volumes:
            if not volume.browsable:
                continue
            try:
                filesystem = view.layout.filesystem(volume.index)
            except (fs.FileSystemError, browse.PointUnavailable) as exc:
                problems.append(f"disk {view.disk.key} volume {volume.index}: {exc}")
                continue
            yield VolumeListing(
                disk_key=view.disk.key,
                volume_index=volume.index,
                entries=walk_filesystem(filesystem, problems, _indexer(point, view.disk.key, volume.index, filesystem)),
                label=volume.label or volume.name or volume.partition_type,
                fs_type=volume.fs_type or "",
            )


def _indexer(point: RecoveryPoint, disk_key: int, volume_index: int, filesystem: fs.FileSystem) -> FolderSink:
    def index(folder: str, entries: list[fs.Entry]) -> None:
        folder_index.record(point.pk, disk_key, volume_index, filesystem, folder, entries)

    return index


def walk_filesystem(
    filesystem: fs.FileSystem, problems: list[str], on_folder: FolderSink | None = None
) -> Iterator[CatalogEntry]:
    """Every entry of the volume; each folder's sorted entries also go to `on_folder` (the large
    folders' listing index, recovery.folder_index)."""
    skipped: list[str] = []

    def note(error: fs.FileSystemError) -> None:
        skipped.append(str(error))

    for folder, entries in filesystem.walk("/", onerror=note):
        if on_folder is not None:
            on_folder(folder, entries)
        for entry in entries:
            yield CatalogEntry(
                path=entry.path,
                is_dir=entry.is_dir,
                size=entry.size,
                modified=entry.modified,
                owner=entry.owner_display or "",
            )
    if skipped:
        log.warning("catalog: %d folder(s) could not be listed: %s", len(skipped), skipped[:3])
        problems.append(f"{len(skipped)} folder(s) could not be listed (first: {skipped[0]})")
