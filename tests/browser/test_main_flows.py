"""The main flows end to end in Chromium, against the simulator and a real worker process: log in,
overview, inventory, protect a folder, back up now, watch the progress, browse the point, download a
file; then every other main page. Screenshots of each are saved as test artifacts (conftest.SCREENSHOTS)."""

from __future__ import annotations

import hashlib

import pytest

from tests.factories.people import log_in
from tests.factories.protection import backup_lab_spec, register_simulator
from tools import diskimages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NOTES = b"restore me, please\n" * 100


def test_an_admin_protects_a_folder_backs_it_up_and_downloads_a_file(
    live_server, page, admin, vcsim_factory, start_worker, screenshot, settings, tmp_path
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(backup_lab_spec(), tls=True)
    tree = {"home": {"bob": {"notes.txt": NOTES}}, "etc": {"hostname": "lnx-01\n"}}
    sim.upload_disk_image("lnx-01", 0, diskimages.build_ext4_disk(tree, size_mib=40))
    register_simulator(sim)

    log_in(page, live_server.url, "alice")
    page.locator("h1", has_text="Overview").wait_for()
    screenshot("overview")
    page.click("nav >> text=Inventory")
    page.get_by_text("lnx-01").first.wait_for()
    screenshot("inventory")

    page.click("nav >> text=Protection")
    page.click("text=New protection group")
    page.fill("#id_name", "Production")
    page.locator("#folder-tree label", has_text="Prod").first.locator("input").check()
    page.locator("#preview h2", has_text="2 VMs").wait_for(timeout=10_000)
    screenshot("protection-group-form")
    page.click("text=Save protection group")
    page.locator("h1", has_text="Production").wait_for()
    page.click("button:has-text('Back up now') >> nth=0")
    page.wait_for_url(f"{live_server.url}/jobs/")
    start_worker("backup", "default", "maintenance", "vault", env={"STORE_DIR": str(settings.BACKUP_STORE_DIR)})
    row = page.locator("tbody tr", has_text="lnx-01")
    row.locator(".badge").get_by_text("Succeeded").wait_for(timeout=120_000)
    screenshot("jobs")

    page.click("nav >> text=Recovery")
    page.click("text=lnx-01")
    screenshot("recovery-vm-points")
    page.locator(".point-list a").first.click()
    page.get_by_text("browsable").first.wait_for()
    screenshot("recovery-point")
    page.locator("table a").first.click()
    page.get_by_role("link", name="home").click()
    page.get_by_role("link", name="bob").click()
    page.get_by_text("notes.txt").wait_for()
    screenshot("recovery-folder")
    with page.expect_download() as download:
        page.locator("tr", has_text="notes.txt").get_by_role("link", name="Download").click()
    saved = tmp_path / "notes.txt"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(NOTES).digest()

    for label in ("Vault", "Alerts", "Reports", "Audit", "Settings"):
        page.click(f"nav >> text={label}")
        page.locator("h1").first.wait_for()
        screenshot(label.lower())
