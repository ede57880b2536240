"""A helpdesk user finds a colleague's file by name in a recovery point and downloads it."""

from __future__ import annotations

import hashlib

import pytest
from django.utils import timezone

from recovery.catalog.jobs import catalogue_vm
from recovery.models import RestoreGrant
from tests.factories.people import log_in
from tests.factories.protection import protect_vms
from tests.factories.recovery import BIG, WINDOWS, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_helpdesk_finds_a_file_by_name_and_downloads_it(live_server, page, helpdesk, settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = create_test_vcenter()
    vm = create_test_vm(create_test_tree(vc, ["Prod"])["Prod"], "win-01")
    group = protect_vms("Prod", [vm])
    point = point_with_disks(vm, group, {2000: diskimages.build_ntfs_disk(WINDOWS, size_mib=48)}, timezone.now())
    catalogue_vm(None, vm.pk)  # search reads the file catalog a backup's job writes
    RestoreGrant.objects.create(user=helpdesk, group=group)

    log_in(page, live_server.url, "bob")
    page.click("nav >> text=Recovery")
    page.click("text=win-01")
    page.click(f"a[href='/recovery/points/{point.pk}/']")
    page.fill("#file-search", "big.bin")
    page.press("#file-search", "Enter")
    page.get_by_text("1 match for").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)

    assert download.value.suggested_filename == "big.bin"
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(BIG).digest()
