"""The hostile-names disk (ext4 and NTFS) in the catalog: every file is catalogued under the escaped
name the file-system layer gives, and search, other versions and the API answer with such names."""

from __future__ import annotations

import pytest
from django.utils import timezone

from recovery.catalog import search
from recovery.catalog.jobs import catalogue_vm
from recovery.filesystems import open_disk
from recovery.models import CatalogPath, CatalogPoint, RestoreGrant
from tests.factories.people import token_client
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.recovery.test_hostile_names import shown
from tools import diskimages

pytestmark = pytest.mark.django_db


@pytest.fixture(params=diskimages.HOSTILE_FORMATS)
def catalogued(request, settings, tmp_path, helpdesk):
    fs_format = request.param
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    image = diskimages.build_hostile_disk(fs_format)
    with image.open("rb") as handle:
        volume = next(v.index for v in open_disk(handle, image.stat().st_size).volumes if v.browsable)
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Guests"])["Guests"], "hostile-01")
    group = protect_vms("Guests", [vm])
    RestoreGrant.objects.create(user=helpdesk, group=group)
    point = point_with_disks(vm, group, {2000: image}, timezone.now())
    catalogue_vm(None, vm.pk)
    files = [shown(fs_format, path) for path in diskimages.hostile_files(fs_format)]
    return {"point": point, "volume": volume, "files": files}


def test_every_file_is_catalogued_under_its_escaped_name(catalogued):
    entry = CatalogPoint.objects.get(point=catalogued["point"])
    assert entry.status == CatalogPoint.Status.CATALOGUED, entry.note
    stored = set(CatalogPath.objects.values_list("path", flat=True))
    assert set(catalogued["files"]) <= stored


def test_search_page_api_and_versions_answer_with_escaped_names(catalogued, helpdesk, as_helpdesk):
    hits = search.search(helpdesk, "*", limit=1000).hits
    assert set(catalogued["files"]) <= {hit.path for hit in hits}

    assert as_helpdesk.get("/recovery/search/", {"q": "*"}).status_code == 200
    answer = token_client(helpdesk).get("/api/v1/search/", {"q": "*", "limit": 1000})
    assert set(catalogued["files"]) <= {hit["path"] for hit in answer.json()["results"]}
    point, volume = catalogued["point"], catalogued["volume"]
    for path in catalogued["files"]:
        page = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/{volume}/versions/", {"path": path})
        assert page.status_code == 200, path
