"""A zip archive produced as it is sent: nothing is staged on disk or held whole in memory.

Python's zipfile writes to an unseekable stream by putting each entry's sizes and CRC in a data
descriptor after its data, so the archive can be handed out piece by piece while the files are read
from the recovery point. Every item of the selection reaches the archive: `restore_plan` makes each
name safe for Windows and every unzip tool (no absolute paths, no `..`, no reserved characters or
device names) and numbers names that then meet (`a:b` and `a_b` become `a_b` and `a_b (2)`); dates
outside what zip holds (1980 to 2107) are clamped. What was renamed, clamped or left out (a symbolic
link, a file that cannot be read) is listed in RESTORE-REPORT.txt at the root, written last.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from recovery.filesystems import FileSystemError
from recovery.restore_plan import REPORT_NAME, RestoreReport, windows_name, zip_planner, zip_time

PIECE = 1024 * 1024
_SEPARATORS = re.compile(r"[\\/]")


@dataclass(frozen=True)
class ZipItem:
    name: str  # '/'-separated path inside the archive, escaped (recovery.names); made safe by stream_zip
    open: Callable[[], BinaryIO] | None  # None for a folder, or an item that is left out
    modified: datetime | None = None
    skipped: str = ""  # why the item is not restored ("symbolic link to /etc, not followed"); listed


def safe_name(path: str) -> str:
    """A relative archive path from a path people typed: "\\" or "/" separate, empty, "." and ".."
    segments are dropped, each name is made safe for Windows. (Escaped names from a volume go through
    `restore_plan.zip_planner` instead, where a backslash is part of the name.)"""
    parts = [windows_name(part)[0] for part in _SEPARATORS.split(path) if part not in ("", ".", "..")]
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


def stream_zip(
    items: Iterable[ZipItem],
    *,
    on_file: Callable[[str, int], None] | None = None,
    report: RestoreReport | None = None,
) -> Iterator[bytes]:
    """Yield the archive's bytes. `on_file(name, size)` after each file, for auditing and progress;
    `report` (filled as the archive is written) is added as RESTORE-REPORT.txt when it has anything
    to say."""
    sink = _Sink()
    report = report if report is not None else RestoreReport()
    planner = zip_planner(report)
    left_out: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as archive:
        for item in _until_broken(items, report):
            source = "/" + item.name.lstrip("/")
            if item.skipped:
                if source not in left_out:
                    left_out.add(source)
                    report.skipped.append((source, item.skipped))
                continue
            name = planner.place(source, is_dir=item.open is None)
            if name is None:
                continue  # two selected folders overlapping: each file once
            stamp = zip_time(source, item.modified, report)
            if item.open is None:
                archive.writestr(zipfile.ZipInfo(name + "/", date_time=stamp), b"")
                report.folders += 1
                yield sink.drain()
                continue
            size = yield from _write_file(archive, sink, item, zipfile.ZipInfo(name, date_time=stamp), report)
            if size is not None and on_file is not None:
                on_file(name, size)
        if report:
            now = zip_time("", datetime.now(UTC), report)
            archive.writestr(zipfile.ZipInfo(REPORT_NAME, date_time=now), report.text())
    yield sink.drain()


def _until_broken(items: Iterable[ZipItem], report: RestoreReport) -> Iterator[ZipItem]:
    """The items, until listing them fails (a folder walked as the archive is written, on a point
    that becomes unreadable): then the archive ends whole, and its report says it is incomplete."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # whatever opening or walking a volume raised; said in the report
            report.unfinished = str(exc) or type(exc).__name__
            return
        yield item


def _write_file(
    archive: zipfile.ZipFile, sink: _Sink, item: ZipItem, info: zipfile.ZipInfo, report: RestoreReport
) -> Generator[bytes, None, int | None]:
    """Write one file's entry, yielding the archive's bytes as they come; its size, or None when the
    file could not be opened (then it is listed as not restored, and no entry is written)."""
    source = "/" + item.name.lstrip("/")
    if item.open is None:
        return None
    try:
        stream = item.open()
    except (FileSystemError, OSError, ValueError) as exc:
        report.skipped.append((source, f"cannot be read: {exc}"))
        return None
    info.compress_type = zipfile.ZIP_DEFLATED
    size = 0
    with stream as source_file, archive.open(info, "w", force_zip64=True) as target:
        try:
            while piece := source_file.read(PIECE):
                target.write(piece)
                size += len(piece)
                out = sink.drain()
                if out:
                    yield out
        except Exception as exc:  # whatever a damaged volume makes dissect raise mid-file
            # The entry's header is sent already: close it as it is, and say so.
            report.skipped.append((source, f"incomplete ({size} bytes): the rest cannot be read: {exc}"))
    yield sink.drain()
    report.files += 1
    report.bytes += size
    return size
