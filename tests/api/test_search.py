"""GET /api/v1/search/: the file catalog through the API, scoped to what each persona may restore
from, with versions and a working download URL per file version."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from recovery.catalog.jobs import catalogue_vm
from recovery.models import RestoreGrant
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages

pytestmark = pytest.mark.django_db

FIRST = {"home": {"bob": {"report-2024.txt": "v1\n", "notes.txt": "same\n"}}}
SECOND = {"home": {"bob": {"report-2024.txt": "version 2\n", "notes.txt": "same\n"}}}


@pytest.fixture
def lab(settings, tmp_path, helpdesk):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod", "Finance"])
    web, fin = create_test_vm(folders["Prod"], "web-01"), create_test_vm(folders["Finance"], "fin-01")
    prod, finance = protect_vms("Prod", [web]), protect_vms("Finance", [fin])
    now = timezone.now()
    first = point_with_disks(web, prod, {2000: _image(FIRST)}, now - dt.timedelta(days=1))
    second = point_with_disks(web, prod, {2000: _image(SECOND)}, now)
    point_with_disks(fin, finance, {2000: _image({"report-secret.txt": "x\n"})}, now)
    for vm in (web, fin):
        catalogue_vm(None, vm.pk)
    RestoreGrant.objects.create(user=helpdesk, group=prod)
    return {"web": web, "fin": fin, "first": first, "second": second}


def _image(tree):
    return diskimages.build_ext4_disk(tree, size_mib=16)


def test_helpdesk_gets_hits_of_granted_vms_with_versions_and_downloads(lab, api_helpdesk):
    response = api_helpdesk.get("/api/v1/search/", {"q": "report*"})

    assert response.status_code == 200
    (hit,) = response.json()["results"]
    assert (hit["vm_name"], hit["path"], hit["item"]) == (
        "web-01",
        "/home/bob/report-2024.txt",
        "2000:1:/home/bob/report-2024.txt",
    )
    newer, older = hit["versions"]
    assert [p["id"] for p in newer["points"]] == [str(lab["second"].pk)] and newer["size"] == len("version 2\n")
    assert [p["id"] for p in older["points"]] == [str(lab["first"].pk)]
    download = api_helpdesk.get(older["download"])
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"v1\n"


def test_an_unchanged_file_is_one_version_held_by_both_points(lab, api_helpdesk):
    (hit,) = api_helpdesk.get("/api/v1/search/", {"q": "bob/notes"}).json()["results"]
    (version,) = hit["versions"]
    assert [p["id"] for p in version["points"]] == [str(lab["second"].pk), str(lab["first"].pk)]


def test_an_administrator_sees_every_vm_and_may_scope_to_one(lab, api_admin):
    everywhere = api_admin.get("/api/v1/search/", {"q": "report"}).json()["results"]
    assert {hit["vm_name"] for hit in everywhere} == {"web-01", "fin-01"}
    only_fin = api_admin.get("/api/v1/search/", {"q": "report", "vm": lab["fin"].pk}).json()["results"]
    assert [hit["path"] for hit in only_fin] == ["/report-secret.txt"]


def test_helpdesk_cannot_search_an_ungranted_vm(lab, api_helpdesk):
    assert api_helpdesk.get("/api/v1/search/", {"q": "report", "vm": lab["fin"].pk}).status_code == 404
    assert api_helpdesk.get("/api/v1/search/", {"q": "*secret*"}).json()["results"] == []


def test_an_auditor_searches_and_someone_without_a_role_may_not(lab, api_auditor, api_norole):
    assert len(api_auditor.get("/api/v1/search/", {"q": "report"}).json()["results"]) == 2
    assert api_norole.get("/api/v1/search/", {"q": "report"}).status_code == 403


def test_a_missing_or_blank_query_is_a_field_error(lab, api_helpdesk):
    assert "q" in api_helpdesk.get("/api/v1/search/").json()
    assert api_helpdesk.get("/api/v1/search/", {"q": "  "}).status_code == 400
