"""Folder listings come in pages of 200: a real ext4 disk with a folder of 5,000 files (and three
subfolders) lists the right slice and count on every page, through the file system and the page,
with HTMX previous/next links, and the selection basket keeps what was ticked on other pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery import filesystems as fs
from tests.factories.people import token_client
from tests.recovery.conftest import FILES, SUBFOLDERS
from tests.recovery.disk_images import build, open_image
from tools import diskimages


def _ext4(image: Path) -> fs.FileSystem:
    layout = open_image(image)
    return layout.filesystem(next(v.index for v in layout.volumes if v.browsable))


def test_pages_are_the_slices_of_the_full_sorted_listing(many_files_image):
    filesystem = _ext4(many_files_image)
    everything = filesystem.list_dir("/many")
    assert len(everything) == FILES + len(SUBFOLDERS)

    first = filesystem.list_page("/many", 0, fs.Page.SIZE)
    assert first.total == FILES + len(SUBFOLDERS) and first.count == 26 and first.number == 1
    assert [e.name for e in first.entries[:3]] == ["sub-a", "Sub-b", "sub-c"]  # folders first, case-insensitive
    assert first.entries == everything[: fs.Page.SIZE]
    assert not first.has_previous and first.has_next

    middle = filesystem.list_page("/many", 12 * fs.Page.SIZE, fs.Page.SIZE)
    assert middle.entries == everything[2400:2600] and middle.number == 13
    assert (middle.first, middle.last) == (2401, 2600)

    last = filesystem.list_page("/many", 25 * fs.Page.SIZE, fs.Page.SIZE)
    assert [e.name for e in last.entries] == ["file-04997.txt", "file-04998.txt", "file-04999.txt"]
    assert last.has_previous and not last.has_next and last.last == last.total

    beyond = filesystem.list_page("/many", 10_000, fs.Page.SIZE)
    assert beyond.entries == [] and beyond.total == FILES + len(SUBFOLDERS)

    few = filesystem.list_page("/few", 0, fs.Page.SIZE)
    assert few.entries == filesystem.list_dir("/few") and few.total == 10 and few.count == 1


def test_a_small_page_size_walks_the_whole_folder_once(many_files_image):
    filesystem = _ext4(many_files_image)
    seen, offset = [], 0
    while True:
        page = filesystem.list_page("/few", offset, 3)
        seen += page.entries
        if not page.has_next:
            break
        offset += 3
    assert seen == filesystem.list_dir("/few") and len(seen) == 10


@pytest.mark.django_db
def test_the_folder_page_shows_200_entries_with_htmx_previous_and_next_links(many_files_point, as_helpdesk):
    point, volume = many_files_point
    url = f"/recovery/points/{point.pk}/2000/{volume}/"

    first = as_helpdesk.get(url, {"path": "/many"}).content.decode()
    assert first.count('type="checkbox"') == fs.Page.SIZE
    assert "1–200 of 5003" in first and "page 1 of 26" in first
    assert "file-00196.txt" in first and "file-00197.txt" not in first
    assert f'hx-get="{url}?path=/many&amp;page=2"' in first and "page=0" not in first

    second = as_helpdesk.get(url, {"path": "/many", "page": "2"}, HTTP_HX_REQUEST="true").content.decode()
    assert second.lstrip().startswith('<section id="listing"')  # the partial HTMX swaps in
    assert "file-00197.txt" in second and "file-00396.txt" in second and "file-00397.txt" not in second
    assert f"{url}?path=/many&amp;page=1" in second and f"{url}?path=/many&amp;page=3" in second

    last = as_helpdesk.get(url, {"path": "/many", "page": "26"}).content.decode()
    assert last.count('type="checkbox"') == 3 and "5001–5003 of 5003" in last and "page=27" not in last

    # Ticked on page 2, still in the basket on page 1 and still ticked when page 2 comes back.
    item = f"2000:{volume}:/many/file-00300.txt"
    assert as_helpdesk.post(f"/recovery/points/{point.pk}/select/", {"item": item}).status_code == 200
    assert item in as_helpdesk.get(url, {"path": "/many"}).content.decode()
    again = as_helpdesk.get(url, {"path": "/many", "page": "2"}).content.decode()
    row = again.split('aria-label="Select file-00300.txt"', 1)[1].split(">", 1)[0]
    assert " checked" in row
    assert as_helpdesk.get(url, {"path": "/many", "page": "x"}).status_code == 200  # a bad page is page 1
    beyond = as_helpdesk.get(url, {"path": "/many", "page": "99"}).content.decode()
    assert "5001–5003 of 5003" in beyond and "page 26 of 26" in beyond  # past the end: the last page


@pytest.mark.django_db
def test_the_api_pages_a_big_folder_without_listing_it_whole(many_files_point, helpdesk):
    point, volume = many_files_point
    api = token_client(helpdesk)
    url = f"/api/v1/points/{point.pk}/files/"

    first = api.get(url, {"disk": 2000, "volume": volume, "path": "/many"}).json()
    assert first["count"] == FILES + len(SUBFOLDERS) and first["previous"] is None and "page=2" in first["next"]
    assert [e["name"] for e in first["results"][:4]] == ["sub-a", "Sub-b", "sub-c", "file-00000.txt"]
    assert len(first["results"]) == 100
    last = api.get(url, {"disk": 2000, "volume": volume, "path": "/many", "page": 51}).json()
    assert [e["name"] for e in last["results"]] == ["file-04997.txt", "file-04998.txt", "file-04999.txt"]
    assert last["next"] is None
    missing = api.get(url, {"disk": 2000, "volume": volume, "path": "/nowhere"})
    assert missing.status_code == 404


@pytest.mark.parametrize("image", ["ntfs_image", "ext4_image", "fat_image"])
def test_every_file_system_pages_exactly_as_it_lists(image, request):
    """NTFS (folder flag from the index key), ext4 (from the directory entry) and FAT (the entry
    itself): three-entry pages of every folder put together are the folder's full listing."""
    layout = open_image(request.getfixturevalue(image))
    for volume in (v for v in layout.volumes if v.browsable):
        filesystem = layout.filesystem(volume.index)
        for folder, entries in filesystem.walk("/"):
            pages = [filesystem.list_page(folder, offset, 3) for offset in range(0, len(entries) + 1, 3)]
            assert [entry for page in pages for entry in page.entries] == entries, folder
            assert {page.total for page in pages} == {len(entries)}


@pytest.mark.parametrize("fs_format", diskimages.HOSTILE_FORMATS)
def test_hostile_names_page_as_they_list(fs_format):
    """Names that are not UTF-8, control characters, Windows collisions: the fast name readers
    decode and escape them as the full listing does."""
    image = build(diskimages.build_hostile_disk, fs_format)
    layout = open_image(image)
    filesystem = layout.filesystem(next(v.index for v in layout.volumes if v.browsable))
    for folder, entries in filesystem.walk("/"):
        pages = [filesystem.list_page(folder, offset, 7) for offset in range(0, len(entries) + 1, 7)]
        assert [entry for page in pages for entry in page.entries] == entries, folder
