"""The personas (one user per role, all with PASSWORD) and clients logged in as them: a session
(the pages), a token (the API, as a script sends it) or a browser page (Playwright)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts.models import ApiToken
from accounts.tokens import create_token

if TYPE_CHECKING:
    from playwright.sync_api import Page

PASSWORD = "correct horse battery staple"


def create_test_user(username: str, role: str | None) -> User:
    """A user with PASSWORD in this role's group (none: logged in, but allowed nothing)."""
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def persona_fixture(username: str, role: str | None, description: str) -> Any:
    """A fixture creating this persona (with the database), described in `pytest --fixtures` by `description`."""

    def persona(db: None) -> User:
        return create_test_user(username, role)

    persona.__doc__ = description
    return pytest.fixture(persona)


def session_client(user: User) -> Client:
    """A test client with a logged-in session, as the browser has after the login page."""
    client = Client()
    client.force_login(user)
    return client


def token_client(user: User) -> Client:
    """A client that sends `Authorization: Token <key>` (a read-and-operate token) and no session
    cookie, as a script does."""
    _, key = create_token(None, user, "test client", ApiToken.Scope.OPERATE)
    return Client(headers={"Authorization": f"Token {key}"})


def client_fixture(persona: str, make_client: Callable[[User], Client]) -> Any:
    """A fixture giving make_client(user) (session_client, token_client) for the user of the persona
    fixture named `persona` (admin, helpdesk, auditor, norole)."""

    def client(request: pytest.FixtureRequest) -> Client:
        return make_client(request.getfixturevalue(persona))

    client.__doc__ = f"{make_client.__name__}({persona})"
    return pytest.fixture(client)


def log_in(page: Page, base_url: str, username: str) -> None:
    """Log in in the browser, through the login page, and wait for the Overview."""
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
