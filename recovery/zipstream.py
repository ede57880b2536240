"""A zip archive produced as it is sent: nothing is staged on disk or held whole in memory.

Python's zipfile writes to an unseekable stream by putting each entry's sizes and CRC in a data
descriptor after its data, so the archive can be handed out piece by piece while the files are read
from the recovery point. Names are made safe for every unzip tool: no absolute paths, no `..`, no
drive letters, and no characters Windows refuses in file names.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

PIECE = 1024 * 1024
_UNSAFE = re.compile(r'[\x00-\x1f<>:"|?*\\]')


@dataclass(frozen=True)
class ZipItem:
    name: str  # '/'-separated path inside the archive (sanitised again by safe_name)
    open: Callable[[], BinaryIO] | None  # None for a folder
    modified: datetime | None = None


def safe_name(path: str) -> str:
    """A relative archive path: drops empty, '.' and '..' segments, replaces unsafe characters."""
    parts = []
    for segment in path.replace("\\", "/").split("/"):
        if segment in ("", ".", ".."):
            continue
        cleaned = _UNSAFE.sub("_", segment).rstrip(" .") or "_"
        parts.append(cleaned)
    if not parts:
        raise ValueError(f"{path!r} names no file")
    return "/".join(parts)


class _Sink:
    """The unseekable file zipfile writes to; the generator drains it after each piece."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # zipfile never closes a file object it was given; part of the file protocol it declares

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def stream_zip(items: Iterable[ZipItem], *, on_file: Callable[[str, int], None] | None = None) -> Iterator[bytes]:
    """Yield the archive's bytes. `on_file(name, size)` after each file, for auditing and progress."""
    sink = _Sink()
    seen: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as archive:
        for item in items:
            name = safe_name(item.name)
            if name in seen:  # two selected folders overlapping: each file once
                continue
            seen.add(name)
            stamp = (item.modified or datetime(1980, 1, 1)).timetuple()[:6]
            if stamp[0] < 1980:
                stamp = (1980, 1, 1, 0, 0, 0)
            if item.open is None:
                archive.writestr(zipfile.ZipInfo(name + "/", date_time=stamp), b"")
                yield sink.drain()
                continue
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            size = 0
            with item.open() as source, archive.open(info, "w", force_zip64=True) as target:
                while piece := source.read(PIECE):
                    target.write(piece)
                    size += len(piece)
                    out = sink.drain()
                    if out:
                        yield out
            yield sink.drain()
            if on_file is not None:
                on_file(name, size)
    yield sink.drain()
