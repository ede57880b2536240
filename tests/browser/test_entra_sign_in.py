"""Sign in with Microsoft end to end in Chromium: the login page's button, the real OpenID Connect provider's
sign-in form over HTTPS (its CA made for the run), and back to the product with the role the user's Entra
group maps to; a user in no mapped group comes back to the login page with the sentence saying why.

Chromium trusts exactly the provider's certificate (--ignore-certificate-errors-spki-list with its key's
hash), not every certificate; the product verifies it against the CA file (settings.ENTRA_ID.ca_file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections

from accounts.roles import RESTORE_OPERATOR
from teams.models import GroupMapping
from teams.oidc_backend import NO_GROUP
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.oidc import HELPDESK_GROUP, configure, start_provider
from tools.oidc_server import PASSWORD, OidcProvider, spki_hash

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider(live_server, tmp_path_factory) -> Iterator[OidcProvider]:
    server = start_provider(tmp_path_factory, f"{live_server.url}/oidc/callback/")
    yield server
    server.stop()


@pytest.fixture
def entra_page(provider, settings, playwright_session):
    configure(settings, provider)
    trust = f"--ignore-certificate-errors-spki-list={spki_hash(provider.certificate)}"
    browser = playwright_session.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, trust], headless=True)
    context = browser.new_context()
    yield context.new_page()
    # The test's queries ran on a connection of the context Playwright's greenlet gave them; closed
    # here, or the test database could not be dropped at the end of the run.
    connections.close_all()
    context.close()
    browser.close()


def _sign_in_with_microsoft(page, live_server, name: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.click("text=Sign in with Microsoft")
    page.locator("h1", has_text="Sign in to the test tenant").wait_for()
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def test_a_member_of_a_mapped_entra_group_signs_in_with_its_role(live_server, entra_page, screenshot_dir):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=HELPDESK_GROUP, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    _sign_in_with_microsoft(entra_page, live_server, "ada")
    entra_page.wait_for_url(f"{live_server.url}/")
    entra_page.locator("h1", has_text="Overview").wait_for()
    entra_page.screenshot(path=str(screenshot_dir / "entra-signed-in.png"), full_page=True)
    user = User.objects.get(username="ada@contoso.example")
    assert list(user.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
    assert user.profile.sign_in == "entra"


def test_a_user_in_no_mapped_group_is_sent_back_with_a_sentence(live_server, entra_page, screenshot_dir):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=HELPDESK_GROUP, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    _sign_in_with_microsoft(entra_page, live_server, "bert")
    entra_page.wait_for_url(f"{live_server.url}/login/")
    entra_page.get_by_text(NO_GROUP).wait_for()
    entra_page.screenshot(path=str(screenshot_dir / "entra-refused.png"), full_page=True)
    assert not User.objects.filter(username="bert@contoso.example").exists()


@pytest.fixture
def screenshot_dir():
    from tests.browser.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
