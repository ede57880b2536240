"""One file out of a recovery point as an HTTP response, shared by the page and the JSON API.

The bytes are streamed as read; the Restore row is completed with the bytes actually sent when the
stream ends (or is cut off), and the content type never lets a browser render restored content as
one of our pages.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

from django.http import StreamingHttpResponse

from recovery import actions
from recovery import filesystems as fs
from recovery.models import Restore
from vault.models import RecoveryPoint

PIECE = 1024 * 1024


def file_response(
    user: Any, point: RecoveryPoint, item: str, entry: fs.Entry, stream: BinaryIO
) -> StreamingHttpResponse:
    """Record the download (Restore row + audit entry) and stream `stream` as an attachment."""
    restore = actions.start_file_restore(user, point, [item], planned_bytes=entry.size)
    response = StreamingHttpResponse(pieces(stream, restore), content_type=content_type(entry.name))
    response["Content-Length"] = str(entry.size)
    response["Content-Disposition"] = attachment(entry.name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def pieces(stream: BinaryIO, restore: Restore) -> Iterator[bytes]:
    sent, error = 0, "download interrupted"
    try:
        while piece := stream.read(PIECE):
            sent += len(piece)
            yield piece
        error = ""
    finally:
        stream.close()
        actions.finish_restore(restore, bytes_done=sent, error=error)


def content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    # Never let a browser render restored content inline as a page of ours.
    return "application/octet-stream" if guessed in (None, "text/html", "image/svg+xml") else guessed


def attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_") or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
