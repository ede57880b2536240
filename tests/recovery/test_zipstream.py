"""Streamed zips: exact trees, safe names, large files in pieces."""

from __future__ import annotations

import io
import zipfile

import pytest

from recovery.zipstream import ZipItem, safe_name, stream_zip


def item(name: str, data: bytes | None) -> ZipItem:
    return ZipItem(name, None if data is None else (lambda: io.BytesIO(data)))


def test_a_multi_folder_selection_unpacks_to_exactly_that_tree():
    files = {"Users/alice/a.txt": b"a", "Users/alice/deep/b.bin": bytes(range(256)) * 9000, "Data/c": b""}
    items = [item("Users/alice", None), item("Users/alice/deep", None), item("Data", None)]
    items += [item(name, data) for name, data in files.items()]
    seen = []

    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(items, on_file=lambda n, s: seen.append((n, s))))))

    assert archive.testzip() is None
    assert {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")} == files
    assert sorted(n for n in archive.namelist() if n.endswith("/")) == ["Data/", "Users/alice/", "Users/alice/deep/"]
    assert sorted(seen) == sorted((n, len(d)) for n, d in files.items())


@pytest.mark.parametrize(
    ("hostile", "safe"),
    [
        ("/etc/passwd", "etc/passwd"),
        ("../../outside.txt", "outside.txt"),
        ("a/./b/../c", "a/b/c"),
        ("C:\\Windows\\win.ini", "C_/Windows/win.ini"),
        ('what?<is>*"this"|.', "what__is___this__"),
        ("Überweisung Zoë.txt", "Überweisung Zoë.txt"),
    ],
)
def test_names_are_made_safe_for_every_unzip_tool(hostile, safe):
    assert safe_name(hostile) == safe


def test_a_name_that_is_only_dots_is_refused():
    with pytest.raises(ValueError):
        safe_name("../..")


def test_a_file_is_sent_in_pieces_not_as_one_block():
    data = bytes(5 * 1024 * 1024)
    pieces = list(stream_zip([item("big.img", data)]))
    assert len([p for p in pieces if p]) > 3
    assert zipfile.ZipFile(io.BytesIO(b"".join(pieces))).read("big.img") == data
