"""Downloads out of a recovery point as HTTP responses: one file (shared by the page and the JSON
API), or a selection of files and folders as one zip.

The bytes are streamed as read; the Restore row is completed with the bytes actually sent when the
stream ends (or is cut off), and the content type never lets a browser render restored content as
one of our pages.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

from django.http import StreamingHttpResponse

from recovery import actions, browse
from recovery import filesystems as fs
from recovery.models import Restore
from recovery.restore_plan import RestoreReport
from recovery.zipstream import ZipItem, stream_zip
from vault import archive, engine
from vault.models import RecoveryPoint

PIECE = 1024 * 1024


def file_response(
    user: Any, point: RecoveryPoint, item: str, entry: fs.Entry, stream: BinaryIO
) -> StreamingHttpResponse:
    """Record the download (Restore row + audit entry) and stream `stream` as an attachment. Its
    first piece is read before anything is recorded or sent, so a file whose chunks are in the
    Archive tier (of a point the cache knew nothing of) raises browse.PointArchived instead of
    giving a download that breaks off at once."""
    first = _first_piece(point, stream)
    restore = actions.start_file_restore(user, point, [item], planned_bytes=entry.size)
    response = StreamingHttpResponse(pieces(stream, restore, first), content_type=content_type(entry.name))
    response["Content-Length"] = str(entry.size)
    response["Content-Disposition"] = attachment(entry.name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _first_piece(point: RecoveryPoint, stream: BinaryIO) -> bytes:
    try:
        return stream.read(PIECE)
    except engine.BlobArchived:
        stream.close()
        archive.note_archived_read(point)
        notice = archive.notice(point)
        assert notice is not None  # just noted
        raise browse.PointArchived(point, notice) from None


def pieces(stream: BinaryIO, restore: Restore, first: bytes | None = None) -> Iterator[bytes]:
    """The file's bytes (starting with `first`, when already read). An archived chunk met further on
    ends the download and marks the point, so its pages show the archive panel from then on."""
    sent, error = 0, "download interrupted"
    try:
        piece = stream.read(PIECE) if first is None else first
        while piece:
            sent += len(piece)
            yield piece
            piece = stream.read(PIECE)
        error = ""
    except engine.BlobArchived:
        error = "stopped at a chunk in the vault's Archive tier: rehydrate the point, then download again"
        if restore.point is not None:
            archive.note_archived_read(restore.point)
        raise
    finally:
        stream.close()
        actions.finish_restore(restore, bytes_done=sent, error=error)


def zip_response(user: Any, point: RecoveryPoint, items: list[browse.Item]) -> StreamingHttpResponse:
    """Record the download of a selection (Restore row + audit entry) and stream it as one zip, its
    folders walked as the archive is written. Raises browse.PointArchived before anything is sent
    when the point's chunks are archived: the zip would otherwise stop at the first one."""
    browse.check_archive(point)
    restore = actions.start_file_restore(user, point, [str(i) for i in items], planned_bytes=0)
    entries = (zip_item for zip_item, _size in browse.expand(point, items))  # lazy: read while sent
    response = StreamingHttpResponse(zip_pieces(entries, restore), content_type="application/zip")
    response["Content-Disposition"] = attachment(f"{point.vm.name}-{point.created:%Y%m%d-%H%M}.zip")
    return response


def zip_pieces(entries: Iterable[ZipItem], restore: Restore) -> Iterator[bytes]:
    """The archive's bytes; the Restore row counts the bytes of the files sent whole, not of the zip,
    and fails with the reason when the selection could not be read to its end (the zip says so too)."""
    sent, error = 0, "download interrupted"
    report = RestoreReport()

    def count(_name: str, size: int) -> None:
        nonlocal sent
        sent += size

    try:
        yield from stream_zip(entries, on_file=count, report=report)
        error = report.unfinished
    finally:
        actions.finish_restore(restore, bytes_done=sent, error=error)


def content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    # Never let a browser render restored content inline as a page of ours.
    return "application/octet-stream" if guessed in (None, "text/html", "image/svg+xml") else guessed


def attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_") or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
