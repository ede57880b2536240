"""In a real browser: a token created with the HTMX form shows its key once and revokes in place; the
login page refuses the right password with the lockout sentence after too many wrong ones."""

from __future__ import annotations

import pytest

from accounts.models import ApiToken
from tests.factories.people import PASSWORD, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_token_is_created_shown_once_and_revoked_without_leaving_the_page(live_server, page, helpdesk):
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/account/tokens/")
    page.evaluate("window.__sameDocument = true")
    page.fill("#id_name", "report script")
    page.select_option("#id_scope", "read")
    page.click("text=Create token")
    key = page.get_by_test_id("new-token").inner_text()
    assert key.startswith("vmb_")
    assert page.evaluate("window.__sameDocument") is True  # swapped by HTMX, not a new page
    token = ApiToken.objects.get(user=helpdesk)
    assert token.name == "report script" and token.scope == "read"

    page.reload()
    assert key not in page.content() and "report script" in page.content()
    page.evaluate("window.__sameDocument = true")
    page.click("button:has-text('Revoke')")
    page.get_by_text("is revoked").wait_for()
    assert page.evaluate("window.__sameDocument") is True
    token.refresh_from_db()
    assert token.revoked is not None


def test_the_right_password_is_refused_with_a_sentence_after_too_many_wrong_ones(live_server, page, admin, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    for password in ("wrong one", "wrong two", PASSWORD):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", password)
        page.click("button[type=submit]")
    message = page.locator(".errorlist").inner_text()
    assert message == "Too many failed sign-ins for this account from your address; try again in 15 minutes."
    assert page.url.endswith("/login/")
