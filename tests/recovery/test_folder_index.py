"""A large folder of a catalogued point opens from its listing index (recovery.folder_index): the page
and the API read one chunk of names and the page's own nodes, never every name of the folder, and
show exactly what the live listing shows, on ext4 and NTFS, hostile names included."""

from __future__ import annotations

import pytest
from django.utils import timezone

from recovery import browse, folder_index
from recovery import filesystems as fs
from recovery.catalog.jobs import catalogue_vm
from recovery.models import FolderIndex, RestoreGrant
from tests.factories.people import token_client
from tests.factories.protection import protect_vms
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.recovery.conftest import FILES, SUBFOLDERS
from tests.recovery.disk_images import open_image
from tools import diskimages

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_listing_refused(monkeypatch):
    """Listing /many live fails the test: only the index may answer for it."""
    live = fs.FileSystem.list_page

    def refuse(self, path="/", offset=0, limit=fs.Page.SIZE):
        assert path.rstrip("/") != "/many", "the big folder was listed live"
        return live(self, path, offset, limit)

    monkeypatch.setattr(fs.FileSystem, "list_page", refuse)


def test_cataloguing_indexes_the_large_folders_only(many_files_point):
    point, volume = many_files_point
    catalogue_vm(None, point.vm_id)
    chunks = FolderIndex.objects.filter(point=point, disk_key=2000, volume_index=volume)
    assert chunks.count() == -(-(FILES + len(SUBFOLDERS)) // folder_index.CHUNK)
    assert set(chunks.values_list("path_key", flat=True)) == {folder_index.path_key("/many")}
    assert folder_index.find(point.pk, 2000, volume, "/few") is None


def test_the_page_of_a_large_folder_reads_the_index(many_files_point, as_helpdesk, live_listing_refused):
    point, volume = many_files_point
    catalogue_vm(None, point.vm_id)
    url = f"/recovery/points/{point.pk}/2000/{volume}/"
    first = as_helpdesk.get(url, {"path": "/many"}).content.decode()
    assert "1–200 of 5003" in first and "file-00196.txt" in first and "file-00197.txt" not in first
    last = as_helpdesk.get(url, {"path": "/many/", "page": "26"}).content.decode()
    assert last.count('type="checkbox"') == 3 and "5001–5003 of 5003" in last
    beyond = as_helpdesk.get(url, {"path": "/many", "page": "99"}).content.decode()
    assert "page 26 of 26" in beyond


def test_the_api_pages_a_large_folder_from_the_index(many_files_point, helpdesk, live_listing_refused):
    point, volume = many_files_point
    catalogue_vm(None, point.vm_id)
    url = f"/api/v1/points/{point.pk}/files/"
    first = token_client(helpdesk).get(url, {"disk": 2000, "volume": volume, "path": "/many"}).json()
    assert first["count"] == FILES + len(SUBFOLDERS)
    assert [e["name"] for e in first["results"][:4]] == ["sub-a", "Sub-b", "sub-c", "file-00000.txt"]
    assert first["results"][3]["path"] == "/many/file-00000.txt"


def test_index_pages_equal_live_pages_across_chunk_borders(many_files_point):
    point, volume = many_files_point
    catalogue_vm(None, point.vm_id)
    filesystem = browse.open_filesystem(point, 2000, volume)
    indexed = folder_index.find(point.pk, 2000, volume, "/many")
    assert indexed is not None and indexed.total == FILES + len(SUBFOLDERS)
    for offset in (0, 990, 999, 1000, 4900, 5000):
        assert indexed.page(filesystem, offset, 200) == filesystem.list_page("/many", offset, 200), offset


@pytest.mark.parametrize("fs_format", diskimages.HOSTILE_FORMATS)
def test_hostile_names_read_through_the_index_as_they_list(fs_format, settings, tmp_path, monkeypatch):
    """Every folder of the hostile disk indexed (the threshold lowered), in chunks of 7: names that are
    not UTF-8, control characters and Windows collisions come back from their ids as listed."""
    monkeypatch.setattr(folder_index, "MIN_ENTRIES", 1)
    monkeypatch.setattr(folder_index, "CHUNK", 7)
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    image = diskimages.build_hostile_disk(fs_format)
    volume = next(v.index for v in open_image(image).volumes if v.browsable)
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Guests"])["Guests"], "hostile-01")
    point = point_with_disks(vm, protect_vms("Guests", [vm]), {2000: image}, timezone.now())
    catalogue_vm(None, vm.pk)
    filesystem = browse.open_filesystem(point, 2000, volume)
    for folder, entries in filesystem.walk("/"):
        if not entries:
            continue  # nothing to index
        indexed = folder_index.find(point.pk, 2000, volume, folder)
        assert indexed is not None, folder
        pages = [indexed.page(filesystem, offset, 5) for offset in range(0, len(entries) + 1, 5)]
        assert [entry for page in pages if page for entry in page.entries] == entries, folder


def test_a_point_whose_folders_are_not_indexed_lists_live(many_files_point, helpdesk):
    point, volume = many_files_point  # not catalogued
    RestoreGrant.objects.get_or_create(user=helpdesk, group=point.group)
    answer = token_client(helpdesk).get(
        f"/api/v1/points/{point.pk}/files/", {"disk": 2000, "volume": volume, "path": "/many"}
    )
    assert answer.json()["count"] == FILES + len(SUBFOLDERS)
