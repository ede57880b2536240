"""Under the Content-Security-Policy (lib/security.py), Chromium reports no violation on the pages an
administrator uses, HTMX is loaded on each (the other browser tests show it updating pages in place),
the API documentation's script runs, and the report's Print button, once an inline handler, still prints."""

from __future__ import annotations

import pytest

from tests.factories.people import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = ["/", "/inventory/", "/protection/", "/recovery/", "/jobs/", "/vault/", "/reports/protection/", "/audit/"]
# Chromium fires this event for every blocked script, style, image or handler; collected from the start.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
window.print = () => { window.__printed = true; };
"""


def test_the_pages_break_no_rule_of_the_policy_and_htmx_still_works(live_server, page, admin):
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server.url, "alice")

    for path in [*PAGES, "/api/docs/"]:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.ok, path
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
        if path != "/api/docs/":
            assert page.evaluate("typeof window.htmx") == "object", path  # HTMX loaded from this server

    page.goto(f"{live_server.url}/api/docs/")
    page.locator(".swagger-ui .info").wait_for(timeout=20_000)  # its init script ran

    page.goto(f"{live_server.url}/reports/protection/")
    page.get_by_role("button", name="Print").click()
    assert page.evaluate("window.__printed") is True
    assert page.evaluate("window.__violations") == []
    assert not [text for text in console if "Content Security Policy" in text]
