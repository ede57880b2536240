from __future__ import annotations

import pytest

from tests.factories.people import log_in
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_group_from_the_folder_tree_and_backs_it_up_now(live_server, page, admin, redis_conn):
    folders = create_test_tree(create_test_vcenter(), ["Prod", "Prod/Web", "Dev"])
    for name in ("web-01", "web-02"):
        create_test_vm(folders["Prod/Web"], name)
    create_test_vm(folders["Dev"], "dev-01")

    log_in(page, live_server.url, "alice")
    page.click("nav >> text=Protection")
    page.click("text=New protection group")
    page.fill("#id_name", "Web servers")
    preview = page.locator("#preview")
    assert "0 VMs" in preview.locator("h2").inner_text()
    page.locator("#folder-tree label", has_text="Prod").first.locator("input").check()
    preview.locator("h2", has_text="2 VMs").wait_for(timeout=10_000)
    assert "web-01" in preview.inner_text() and "dev-01" not in preview.inner_text()
    page.fill("#id_policy-schedule", "daily 03:15")
    page.click("text=Save protection group")
    page.locator("h1", has_text="Web servers").wait_for()
    assert "Every day at 03:15" in page.content()

    page.click("button:has-text('Back up now') >> nth=0")
    page.wait_for_url(f"{live_server.url}/jobs/")
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    assert {rows.nth(i).locator("td").first.inner_text() for i in range(2)} == {"Backup of web-01", "Backup of web-02"}
