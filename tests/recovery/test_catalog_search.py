"""Search and "other versions" from the file catalog, through the page and `manage.py search-files`:
hits with their versions across points, restores from a hit, and helpdesk seeing only the VMs
granted to them. Real ext4 images in the store, catalogued by the catalog job's function."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from recovery.catalog.jobs import catalogue_vm
from recovery.models import RestoreGrant
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages

pytestmark = pytest.mark.django_db

FIRST = {"etc": {"motd": "hello\n"}, "home": {"bob": {"report-2024.txt": "v1\n"}}}
SECOND = {"etc": {"motd": "hello\n"}, "home": {"bob": {"report-2024.txt": "version 2\n"}}}
OTHER = {"srv": {"report-secret.txt": "finance only\n"}}


@pytest.fixture
def lab(settings, tmp_path, helpdesk):
    """web-01 (group Prod, granted to helpdesk) with two points; fin-01 (group Finance, not granted)."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod", "Finance"])
    web = create_test_vm(folders["Prod"], "web-01")
    fin = create_test_vm(folders["Finance"], "fin-01")
    prod, finance = protect_vms("Prod", [web]), protect_vms("Finance", [fin])
    now = timezone.now()
    points = {
        "first": point_with_disks(web, prod, {2000: _image(FIRST)}, now - dt.timedelta(days=2)),
        "second": point_with_disks(web, prod, {2000: _image(SECOND)}, now - dt.timedelta(days=1)),
        "fin_point": point_with_disks(fin, finance, {2000: _image(OTHER)}, now),
    }
    catalogue_vm(None, web.pk)
    catalogue_vm(None, fin.pk)
    RestoreGrant.objects.create(user=helpdesk, group=prod)
    return {"web": web, "fin": fin, **points}


def _image(tree):
    return diskimages.build_ext4_disk(tree, size_mib=16)


def test_helpdesk_finds_a_file_with_its_versions_in_granted_vms_only(lab, as_helpdesk):
    page = as_helpdesk.get("/recovery/search/", {"q": "report*"}).content.decode()

    assert "report-2024.txt" in page and "report-secret.txt" not in page and "fin-01" not in page
    first, second = lab["first"], lab["second"]
    # Each version links to a download from the newest point holding it.
    assert f"/recovery/points/{second.pk}/2000/1/file/?path=/home/bob/report-2024.txt" in page
    assert f"/recovery/points/{first.pk}/2000/1/file/?path=/home/bob/report-2024.txt" in page


def test_a_download_from_a_hit_restores_that_version(lab, as_helpdesk):
    response = as_helpdesk.get(
        f"/recovery/points/{lab['first'].pk}/2000/1/file/", {"path": "/home/bob/report-2024.txt"}
    )
    assert b"".join(response.streaming_content) == b"v1\n"


def test_an_unchanged_file_is_one_version_in_both_points(lab, as_helpdesk):
    page = as_helpdesk.get("/recovery/search/", {"q": "motd"}).content.decode()

    assert "in 2 points" in page and page.count("/file/?path=/etc/motd") == 1


def test_helpdesk_cannot_scope_a_search_to_an_ungranted_vm(lab, as_helpdesk):
    assert as_helpdesk.get("/recovery/search/", {"q": "report", "vm": lab["fin"].pk}).status_code == 404
    in_point = as_helpdesk.get(f"/recovery/points/{lab['fin_point'].pk}/search/", {"q": "report"})
    assert in_point.status_code in (403, 404)


def test_an_administrator_finds_hits_in_every_vm_and_the_point_search_stays_in_its_vm(lab, as_admin):
    everywhere = as_admin.get("/recovery/search/", {"q": "report"}).content.decode()
    assert "report-2024.txt" in everywhere and "report-secret.txt" in everywhere

    in_point = as_admin.get(f"/recovery/points/{lab['fin_point'].pk}/search/", {"q": "report"}).content.decode()
    assert "report-secret.txt" in in_point and "report-2024.txt" not in in_point


def test_an_auditor_sees_hits_but_no_download(lab, as_auditor):
    page = as_auditor.get("/recovery/search/", {"q": "report"}).content.decode()
    assert "report-2024.txt" in page and "/file/?path=" not in page


def test_the_htmx_partial_is_only_the_results(lab, as_helpdesk):
    page = as_helpdesk.get("/recovery/search/", {"q": "*.txt"}, HTTP_HX_REQUEST="true").content.decode()
    assert page.lstrip().startswith('<section id="results">') and "report-2024.txt" in page


def test_other_versions_come_from_the_catalog(lab, as_helpdesk):
    first, second = lab["first"], lab["second"]
    page = as_helpdesk.get(
        f"/recovery/points/{second.pk}/2000/1/versions/", {"path": "/home/bob/report-2024.txt"}
    ).content.decode()
    assert f"/recovery/points/{first.pk}/2000/1/file/?path=/home/bob/report-2024.txt" in page
    assert f"/recovery/points/{second.pk}/2000/1/file/?path=/home/bob/report-2024.txt" in page

    gone = as_helpdesk.get(f"/recovery/points/{second.pk}/2000/1/versions/", {"path": "/etc/gone"})
    assert gone.content.decode().count("not in this point") == 2


def _search_files(*args: str) -> str:
    out = StringIO()
    call_command("search-files", *args, stdout=out)
    return out.getvalue()


def test_the_command_finds_hits_in_every_vm_and_as_a_user_only_theirs(lab, helpdesk):
    everywhere = _search_files("report")
    assert "report-2024.txt" in everywhere and "report-secret.txt" in everywhere

    as_bob = json.loads(_search_files("report", "--user", "bob", "--json"))
    assert [hit["path"] for hit in as_bob["results"]] == ["/home/bob/report-2024.txt"]
    (hit,) = as_bob["results"]
    assert hit["item"] == "2000:1:/home/bob/report-2024.txt"
    assert [[p["id"] for p in v["points"]] for v in hit["versions"]] == [
        [str(lab["second"].pk)],
        [str(lab["first"].pk)],
    ]

    with pytest.raises(CommandError, match="no VM you may search"):
        _search_files("report", "--vm", "fin-01", "--user", "bob")
    assert "report-secret.txt" in _search_files("report", "--vm", "fin-01")


def test_the_catalog_command_reports_and_backfills(lab):
    out = StringIO()
    call_command("catalog", "status", "--json", stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["catalogued"] == 3 and figures["pending"] == 0 and figures["versions"] > 0


def test_the_recovery_page_links_to_the_search_across_all_points(lab, as_helpdesk):
    assert 'href="/recovery/search/"' in as_helpdesk.get("/recovery/").content.decode()


def test_the_page_says_which_points_are_not_searched_yet(lab, as_helpdesk):
    point_with_disks(lab["web"], lab["web"].protection_group, {2000: _image(FIRST)}, timezone.now())

    page = as_helpdesk.get("/recovery/search/", {"q": "motd"}).content.decode()

    assert "1 recovery point is still being catalogued" in page
