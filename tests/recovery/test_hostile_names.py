"""The hostile-names disk (tools.diskimages.build_hostile_disk) on ext4 and on NTFS, in a recovery
point, through the pages, the JSON API, the zip and the command line: every file comes back with
identical bytes, names that are not text are shown escaped, and nothing answers 5xx."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django.utils.html import escape as html_escape

from recovery import names
from recovery.filesystems import open_disk
from recovery.models import Restore, RestoreGrant
from recovery.restore_plan import REPORT_NAME
from tests.factories.people import token_client
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages

pytestmark = pytest.mark.django_db


def shown(fs_format: str, path: bytes) -> str:
    """A path of the hostile volume as the product shows it (see recovery.names)."""
    if fs_format == "ntfs":  # wimlib wrote the WTF-8 name as an unpaired UTF-16 surrogate
        return "/" + names.escape(path.decode("utf-8", "surrogatepass"), from_bytes=False)
    return "/" + names.escape(path.decode("utf-8", "surrogateescape"), from_bytes=True)


@pytest.fixture(params=diskimages.HOSTILE_FORMATS)
def hostile(request, settings, tmp_path, helpdesk) -> dict[str, Any]:
    fs_format = request.param
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    image = diskimages.build_hostile_disk(fs_format)
    with image.open("rb") as handle:
        volume = next(v.index for v in open_disk(handle, image.stat().st_size).volumes if v.browsable)
    vc = create_test_vcenter()
    vm = create_test_vm(create_test_tree(vc, ["Guests"])["Guests"], "hostile-01")
    group = protect_vms("Guests", [vm])
    RestoreGrant.objects.create(user=helpdesk, group=group)
    point = point_with_disks(vm, group, {2000: image}, timezone.now())
    files = {shown(fs_format, path): data for path, data in diskimages.hostile_files(fs_format).items()}
    return {"format": fs_format, "point": point, "volume": volume, "files": files, "tmp": tmp_path}


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _folders(files: dict[str, bytes]) -> set[str]:
    found = {"/"}
    for path in files:
        parts = path.split("/")[1:-1]
        found |= {"/" + "/".join(parts[: n + 1]) for n in range(len(parts))}
    return found


def test_folder_pages_fragments_and_downloads_answer_with_escaped_names(hostile, as_helpdesk):
    point, volume, files = hostile["point"], hostile["volume"], hostile["files"]
    base = f"/recovery/points/{point.pk}/2000/{volume}/"
    for folder in sorted(_folders(files)):
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = as_helpdesk.get(base, {"path": folder}, **headers)
            assert response.status_code == 200, (folder, response.status_code)
            page = response.content.decode("utf-8")
            for child in [p for p in files if _parent(p) == folder]:
                assert html_escape(child.rsplit("/", 1)[1]) in page, child
    for path, data in files.items():
        response = as_helpdesk.get(base + "file/", {"path": path})
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content) == data, path
    assert as_helpdesk.get(base + "versions/", {"path": "/names/new\\x0aline.txt"}).status_code == 200
    assert as_helpdesk.get(f"/recovery/points/{point.pk}/search/", {"q": "lone"}).status_code == 200
    assert as_helpdesk.get(f"/recovery/points/{point.pk}/").status_code == 200
    selected = as_helpdesk.post(f"/recovery/points/{point.pk}/select/", {"item": f"2000:{volume}:/names/a:b"})
    assert selected.status_code == 200


def _zip_name(path: str, renamed: dict[str, str]) -> str:
    """Where a source path went in the zip: under its nearest renamed folder, else where it was."""
    parts = path.split("/")[1:]
    for cut in range(len(parts), 0, -1):
        prefix = "/" + "/".join(parts[:cut])
        if prefix in renamed:
            return "/".join([renamed[prefix], *parts[cut:]])
    return "/".join(parts)


def _report_renames(report: str) -> dict[str, str]:
    section = report.split("Renamed (", 1)[1].split("\n\n", 1)[0]
    return dict(line.strip().split("  ->  ") for line in section.splitlines()[1:])


def test_the_zip_of_the_whole_volume_holds_every_file_and_reports_each_rename(hostile, as_helpdesk):
    point, volume, files = hostile["point"], hostile["volume"], hostile["files"]
    # The root and two items inside it: overlapping selections give each file once.
    chosen = [f"2000:{volume}:/", f"2000:{volume}:/names", f"2000:{volume}:/names/a:b"]
    response = as_helpdesk.post(f"/recovery/points/{point.pk}/zip/", {"item": chosen})
    assert response.status_code == 200
    _check_zip(b"".join(response.streaming_content), files)


def _check_zip(data: bytes, files: dict[str, bytes]) -> None:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    entries = [n for n in archive.namelist() if not n.endswith("/")]
    assert len(entries) == len(set(n.casefold() for n in entries)) == len(files) + 1  # and the report
    report = archive.read(REPORT_NAME).decode("utf-8")
    renamed = _report_renames(report)
    for path, data in files.items():
        assert archive.read(_zip_name(path, renamed)) == data, path
    for hostile_name in ("/names/a:b", "/names/x.", "/names/Q?", "/names/CON", "/RESTORE-REPORT.txt"):
        assert hostile_name in renamed
    assert renamed["/names/a:b"] in ("names/a_b (2)", "names/a_b")
    assert "/dates/2230.txt  2230-01-01 00:00:00 UTC  ->  2107-12-31 23:59:58" in report
    assert "/dates/1975.txt  1975-01-01 00:00:00 UTC  ->  1980-01-01 00:00:00" in report
    assert "/links/to passwd  symbolic link to" in report and "not followed" in report
    assert all(char.isprintable() for line in report.splitlines() for char in line)
    restore = Restore.objects.get(kind="files", requested_by__username="bob")
    assert restore.status == "completed" and restore.bytes_restored == sum(len(d) for d in files.values())


def test_the_api_zips_the_whole_volume_the_same_way(hostile, helpdesk):
    api = token_client(helpdesk)
    point, volume = hostile["point"], hostile["volume"]
    url = f"/api/v1/points/{point.pk}/zip/"
    chosen = [f"2000:{volume}:/", f"2000:{volume}:/names/a:b", f"2000:{volume}:/names/new\\x0aline.txt"]

    response = api.post(url, {"items": chosen}, content_type="application/json")

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    _check_zip(b"".join(response.streaming_content), hostile["files"])
    missing = api.post(url, {"items": [f"2000:{volume}:/names/absent"]}, content_type="application/json")
    assert missing.status_code == 404
    outside = api.post(url, {"items": [f"2000:{volume}:/names/../.."]}, content_type="application/json")
    assert outside.status_code == 400
    assert Restore.objects.filter(kind="files").count() == 1


def _tree_of(root: Path) -> dict[bytes, bytes]:
    found = {}
    for folder, _dirs, filenames in os.walk(bytes(root)):
        for filename in filenames:
            full = os.path.join(folder, filename)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, bytes(root))] = handle.read()
    return found


def test_restore_files_writes_every_file_with_its_original_name_and_bytes(hostile):
    volume, target = hostile["volume"], hostile["tmp"] / "restored"
    target.mkdir()
    out = io.StringIO()
    paths = [f"2000:{volume}:/", f"2000:{volume}:/names", f"2000:{volume}:/names/a:b"]
    call_command("restore-files", "hostile-01", *[f"--path={p}" for p in paths], f"--to={target}", stdout=out)

    expected = diskimages.hostile_files(hostile["format"])
    if hostile["format"] == "ntfs":  # an unpaired surrogate has no bytes on Linux: written escaped
        lone = b"names/\xed\xb2\x80 lone surrogate.txt"
        expected[b"names/\\udc80 lone surrogate.txt"] = expected.pop(lone)
        assert "/names/\\udc80 lone surrogate.txt  ->  names/\\\\udc80 lone surrogate.txt" in out.getvalue()
    assert _tree_of(target) == expected
    assert os.stat(target / "dates" / "1975.txt").st_mtime == diskimages.HOSTILE_OLD_TIME
    assert "/links/to passwd  symbolic link to" in out.getvalue()
    assert f"Restored {len(expected)} file(s)" in out.getvalue()
    assert not any(os.path.islink(os.path.join(folder, n)) for folder, ds, fs in os.walk(target) for n in ds + fs)
    restore = Restore.objects.get(kind="files")
    assert restore.status == "completed" and restore.bytes_restored == sum(len(d) for d in expected.values())


def test_restore_files_never_overwrites_and_never_writes_through_a_link_in_the_target(hostile):
    volume, target, outside = hostile["volume"], hostile["tmp"] / "again", hostile["tmp"] / "outside"
    target.mkdir()
    outside.mkdir()
    path = f"--path=2000:{volume}:/names"
    call_command("restore-files", "hostile-01", path, f"--to={target}", stdout=io.StringIO())
    before = _tree_of(target)
    with pytest.raises(CommandError, match="exist already"):
        call_command("restore-files", "hostile-01", path, f"--to={target}", stdout=io.StringIO())
    assert _tree_of(target) == before
    linked = hostile["tmp"] / "linked"
    linked.mkdir()
    (linked / "dates").symlink_to(outside)  # a folder of the selection is a link out of the target
    with pytest.raises(CommandError, match="nothing written"):
        call_command("restore-files", "hostile-01", f"--path=2000:{volume}:/dates", f"--to={linked}")
    assert list(outside.iterdir()) == []


def test_ls_prints_escaped_names(hostile):
    out = io.StringIO()
    call_command("ls", "hostile-01", f"2000:{hostile['volume']}:/names", stdout=out)
    text = out.getvalue()
    assert "new\\x0aline.txt" in text and "tab\\x09here" in text and "back\\\\slash.txt" in text
    assert "\x1b" not in text and "\x07" not in text
    lone = "\\udc80 lone surrogate.txt" if hostile["format"] == "ntfs" else "\\xed\\xb2\\x80 lone surrogate.txt"
    assert lone in text
    if hostile["format"] == "ext4":
        assert "caf\\xe9.txt" in text
    out = io.StringIO()
    call_command("ls", "hostile-01", f"2000:{hostile['volume']}:/names", "--json", stdout=out)
    assert "new\\\\x0aline.txt" in out.getvalue()  # the escaped name, JSON-quoted


def test_the_api_lists_escaped_names_and_downloads_every_file(hostile, helpdesk):
    api = token_client(helpdesk)
    point, volume, files = hostile["point"], hostile["volume"], hostile["files"]
    assert api.get(f"/api/v1/points/{point.pk}/volumes/").status_code == 200
    for folder in sorted(_folders(files)):
        response = api.get(f"/api/v1/points/{point.pk}/files/", {"disk": 2000, "volume": volume, "path": folder})
        assert response.status_code == 200, (folder, response.status_code)
        listed = {row["path"] for row in response.json()["results"]}
        assert {p for p in files if _parent(p) == folder} <= listed
    for path, data in files.items():
        response = api.get(f"/api/v1/points/{point.pk}/download/", {"disk": 2000, "volume": volume, "path": path})
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content) == data, path
