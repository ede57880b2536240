"""In Chromium: an administrator creates a restore operator on the Users page with a folder grant; the
new user signs in with the one-time password, must choose their own, sees only the granted VMs and
restores (downloads) a file."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.factories.people import log_in
from tests.factories.protection import protect_vms
from tests.factories.recovery import LINUX, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
OWN_PASSWORD = "erin's own long passphrase"


def test_a_new_restore_operator_sets_a_password_sees_only_granted_vms_and_restores_a_file(
    live_server, page, admin, screenshot, settings, tmp_path
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    tree = create_test_tree(create_test_vcenter(), ["Prod", "Finance"])
    web, fin = create_test_vm(tree["Prod"], "web-01"), create_test_vm(tree["Finance"], "fin-01")
    group = protect_vms("Everything", [web, fin])
    image = diskimages.build_ext4_disk(LINUX, size_mib=40)
    point = point_with_disks(web, group, {2000: image}, timezone.now())
    point_with_disks(fin, group, {2000: image}, timezone.now())

    log_in(page, live_server.url, "alice")
    page.click("nav >> text=Users")
    page.click("text=New user")
    page.fill("#id_username", "erin")
    page.fill("#id_email", "erin@example.com")
    page.get_by_label("Restore operator").check()
    page.select_option("#id_grant_folders", label="DC1/Prod")
    screenshot("new-user")
    page.click("button:has-text('Create user')")
    one_time = page.get_by_test_id("one-time-password").inner_text().strip()
    screenshot("one-time-password")
    page.click("text=← erin")
    page.get_by_text("folder DC1/Prod and below").wait_for()
    screenshot("user-page")
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{live_server.url}/login/")

    page.fill("#id_username", "erin")
    page.fill("#id_password", one_time)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/account/password/")
    page.click("nav >> text=Recovery")  # not before choosing a password
    page.wait_for_url(f"{live_server.url}/account/password/?next=%2Frecovery%2F")
    page.fill("#id_old_password", one_time)
    page.fill("#id_new_password1", OWN_PASSWORD)
    page.fill("#id_new_password2", OWN_PASSWORD)
    screenshot("choose-password")
    page.click("button:has-text('Change password')")
    page.wait_for_url(f"{live_server.url}/recovery/")

    page.get_by_text("web-01").first.wait_for()
    assert "fin-01" not in page.content()
    page.click("text=web-01")
    page.click(f"a[href='/recovery/points/{point.pk}/']")
    page.locator("table a").first.click()
    page.get_by_role("link", name="home").click()
    page.get_by_role("link", name="bob").click()
    with page.expect_download() as download:
        page.locator("tr", has_text="notes.txt").get_by_role("link", name="Download").click()
    saved = tmp_path / "notes.txt"
    download.value.save_as(saved)
    assert saved.read_text() == "TODO\n"
