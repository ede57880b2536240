from __future__ import annotations

import pytest

from tests.factories.people import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_starts_a_job_and_watches_it_succeed_without_reloading(live_server, page, admin, start_worker):
    log_in(page, live_server.url, "alice")
    page.click("nav >> text=Jobs")
    page.click("text=Run system check")
    row = page.locator("tbody tr").first
    assert row.locator(".badge").inner_text() == "Queued"
    # The page is loaded once, before any worker runs: only HTMX polling can change the row now.
    page.evaluate("window.__sameDocument = true")
    start_worker()
    row.locator(".badge").get_by_text("Succeeded").wait_for(timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    assert row.get_attribute("data-status") == "succeeded"
    assert row.get_attribute("hx-get") is None  # polling stopped with the final state

    row.locator("a").click()
    assert "Redis" in page.locator(".log").inner_text()


def test_a_wrong_password_is_refused_with_a_message(live_server, page, admin):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "not the password")
    page.click("button[type=submit]")
    assert "correct username and password" in page.locator(".errorlist").inner_text()


def test_a_helpdesk_user_reaches_every_page_from_the_navigation(live_server, page, helpdesk):
    log_in(page, live_server.url, "bob")
    # Helpdesk staff see only what their role allows: no Inventory (their VMs are on the Recovery
    # page), Protection or Vault link.
    assert not page.locator("nav >> text=Inventory").count()
    assert not page.locator("nav >> text=Protection").count()
    assert not page.locator("nav >> text=Vault").count()
    for label, heading in [
        ("Recovery", "Recovery"),
        ("Jobs", "Jobs"),
        ("Settings", "Settings"),
        ("Overview", "Overview"),
    ]:
        page.click(f"nav >> text={label}")
        assert page.locator("h1").first.inner_text().startswith(heading)
    assert not page.get_by_text("Run system check").count()
