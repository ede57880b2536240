"""The rules behind hostile names, without a disk: the reversible escape of recovery.names, the
Windows-safe names and numbered suffixes of recovery.restore_plan, and what a zip does with
collisions, impossible dates, items left out and files that cannot be read."""

from __future__ import annotations

import importlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recovery import names
from recovery.filesystems import DamagedFileSystem
from recovery.restore_plan import REPORT_NAME, RestoreReport, linux_planner, numbered, windows_name, zip_planner
from recovery.zipstream import ZipItem, stream_zip

EVERY_BYTE_NAME = bytes(range(1, 256)).replace(b"/", b"")


@pytest.mark.parametrize(
    ("raw", "from_bytes", "escaped"),
    [
        ("plain name.txt", True, "plain name.txt"),
        ("caf\udce9.txt", True, "caf\\xe9.txt"),  # latin-1 b"caf\xe9" from ext4
        ("\udc80 lone", False, "\\udc80 lone"),  # an unpaired surrogate from NTFS
        ("new\nline", True, "new\\x0aline"),
        ("bell\x07 del\x7f", False, "bell\\x07 del\\x7f"),
        ("c1 \x85 ls \u2028", True, "c1 \\u0085 ls \\u2028"),
        ("back\\slash", True, "back\\\\slash"),
        ("caf\\xe9 literal", True, "caf\\\\xe9 literal"),  # looks like an escape; is not one
        ("naïve ✓ 日本 😀", False, "naïve ✓ 日本 😀"),
    ],
)
def test_escape_gives_printable_text_and_unescape_gives_the_raw_name_back(raw, from_bytes, escaped):
    assert names.escape(raw, from_bytes=from_bytes) == escaped
    assert names.unescape(escaped) == raw
    assert escaped.encode("utf-8") and all(char.isprintable() for char in escaped)


def test_every_byte_a_linux_name_can_hold_round_trips_to_its_original_bytes():
    raw = EVERY_BYTE_NAME.decode("utf-8", "surrogateescape")
    escaped = names.escape(raw)
    assert escaped.isprintable() and escaped.encode("utf-8")
    assert names.unescape(escaped) == raw
    assert names.original_bytes(escaped) == EVERY_BYTE_NAME


def test_a_name_with_an_unpaired_surrogate_has_no_linux_bytes():
    assert names.original_bytes("\\udc80 lone") is None
    assert names.original_bytes("\\u0085") == "\x85".encode()


def test_a_lone_backslash_that_is_no_escape_is_kept_as_typed():
    assert names.unescape("C:\\Windows\\win.ini") == "C:\\Windows\\win.ini"
    assert names.printable("C:\\Users\\x\n", from_bytes=False) == "C:\\Users\\x\\x0a"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("a:b", "a_b"),
        ("x.", "x"),
        ("trailing space ", "trailing space"),
        ("Q?", "Q_"),
        ('quote"and|pipe<>.txt', "quote_and_pipe__.txt"),
        ("CON", "CON_"),
        ("nul.txt", "nul_.txt"),
        ("COM1.tar.gz", "COM1_.tar.gz"),
        ("console", "console"),
        ("back\\\\slash", "back_slash"),
        ("new\\x0aline", "new_x0aline"),
        ("...", "_"),
        ("L" * 300 + ".txt", "L" * 251 + ".txt"),
        ("日" * 300, "日" * 255),
    ],
)
def test_windows_names(name, safe):
    assert windows_name(name) == (safe, safe == name)


def test_numbered_names_keep_the_extension_and_the_length_limit():
    assert numbered("report.txt", 2, is_dir=False) == "report (2).txt"
    assert numbered("v1.2", 3, is_dir=True) == "v1.2 (3)"
    assert numbered(".bashrc", 2, is_dir=False) == ".bashrc (2)"
    long = numbered("L" * 251 + ".txt", 2, is_dir=False)
    assert len(long) == 255 and long.endswith(" (2).txt")


def test_the_zip_planner_numbers_names_that_meet_in_one_folder_and_reports_them():
    report = RestoreReport()
    planner = zip_planner(report)
    placed = [
        planner.place(path, is_dir=is_dir)
        for path, is_dir in [
            ("/d/a:b", False),
            ("/d/a_b", False),
            ("/d/Report.txt", False),
            ("/d/report.txt", False),
            ("/d/a:b", False),  # selected twice: placed once
            ("/RESTORE-REPORT.txt", False),  # the report's own name stays free
            ("/f:x/inside", False),  # its folder is placed on the way
            ("/f_x/inside", False),
        ]
    ]
    assert placed == [
        "d/a_b",
        "d/a_b (2)",
        "d/Report.txt",
        "d/report (2).txt",
        None,
        "RESTORE-REPORT (2).txt",
        "f_x/inside",
        "f_x (2)/inside",
    ]
    assert ("/d/a_b", "d/a_b (2)") in report.renamed and ("/f:x", "f_x") in report.renamed
    assert ("/d/Report.txt", "d/Report.txt") not in report.renamed


def test_the_linux_planner_writes_original_bytes_and_escapes_only_what_linux_cannot_hold():
    report = RestoreReport()
    planner = linux_planner(report)
    assert planner.place("/caf\\xe9.txt", is_dir=False) == "caf\udce9.txt"
    assert planner.place("/a:b", is_dir=False) == "a:b"
    assert planner.place("/\\udc80 lone", is_dir=False) == "\\udc80 lone"
    assert planner.place("/\\\\udc80 lone", is_dir=False) == "\\udc80 lone (2)"
    assert report.renamed == [("/\\udc80 lone", "\\\\udc80 lone"), ("/\\\\udc80 lone", "\\\\udc80 lone (2)")]


def _file(name: str, data: bytes, modified: datetime | None = None) -> ZipItem:
    return ZipItem(name, lambda: io.BytesIO(data), modified)


def _broken() -> io.BytesIO:
    raise DamagedFileSystem("cannot read '/bad': damaged MFT record")


def test_a_zip_holds_every_item_and_a_report_of_what_changed():
    items = [
        _file("/Q?", b"question"),
        _file("/Q*", b"star"),
        _file("/new\\x0aline", b"newline"),
        _file("/future", b"2230", datetime(2230, 1, 1, tzinfo=UTC)),
        _file("/past", b"1975", datetime(1975, 1, 1, tzinfo=UTC)),
        ZipItem("/link", None, skipped="symbolic link to /etc/passwd, not followed"),
        ZipItem("/bad", _broken),
        _file("/plain.txt", b"plain"),
    ]
    seen: list[tuple[str, int]] = []
    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(items, on_file=lambda n, s: seen.append((n, s))))))
    assert {n: archive.read(n) for n in archive.namelist() if n != REPORT_NAME} == {
        "Q_": b"question",
        "Q_ (2)": b"star",
        "new_x0aline": b"newline",
        "future": b"2230",
        "past": b"1975",
        "plain.txt": b"plain",
    }
    assert archive.getinfo("future").date_time == (2107, 12, 31, 23, 59, 58)
    assert archive.getinfo("past").date_time == (1980, 1, 1, 0, 0, 0)
    report = archive.read(REPORT_NAME).decode()
    assert "Restored 6 file(s) and 0 folder(s), 32 bytes." in report
    assert "/Q*  ->  Q_ (2)" in report and "/new\\x0aline  ->  new_x0aline" in report
    assert "/future  2230-01-01 00:00:00 UTC  ->  2107-12-31 23:59:58" in report
    assert "/link  symbolic link to /etc/passwd, not followed" in report
    assert "/bad  cannot be read: cannot read '/bad': damaged MFT record" in report
    assert sum(size for _name, size in seen) == 32 and len(seen) == 6


def test_a_zip_with_nothing_to_report_has_no_report():
    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip([_file("/a.txt", b"a"), ZipItem("/", None)]))))
    assert archive.namelist() == ["a.txt"]


class _FailsMidway(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise DamagedFileSystem("damaged extent")
        return super().read(4)


def _step(command: Any, item: ZipItem, dest: Path) -> Any:
    return command._Step(item, 0, dest, dest.name)


def test_restore_files_leaves_no_half_file_when_the_source_breaks_mid_file(tmp_path):
    command = importlib.import_module("recovery.management.commands.restore-files")
    report = RestoreReport()
    broken = _step(command, ZipItem("/half.bin", lambda: _FailsMidway(b"12345678")), tmp_path / "half.bin")
    whole = _step(command, ZipItem("/whole.bin", lambda: io.BytesIO(b"ok")), tmp_path / "whole.bin")

    command._write(broken, report)
    command._write(whole, report)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.bin"]
    assert report.skipped == [("/half.bin", "cannot be read past byte 4: damaged extent")]
    assert (report.files, report.bytes) == (1, 2)


def test_restore_files_numbers_a_name_a_case_insensitive_target_folds_onto_another(tmp_path):
    command = importlib.import_module("recovery.management.commands.restore-files")
    report = RestoreReport()
    # On such a target, writing Report.txt made report.txt exist, though it was free when checked.
    (tmp_path / "report.txt").write_bytes(b"written first")
    step = _step(command, ZipItem("/report.txt", lambda: io.BytesIO(b"second")), tmp_path / "report.txt")

    command._write(step, report)

    assert (tmp_path / "report (2).txt").read_bytes() == b"second"
    assert report.renamed == [("/report.txt", "report (2).txt")]
