"""Who may call the API: tokens (missing, wrong, revoked, inactive user), sessions with CSRF, and
roles enforced like the pages. Tokens themselves (hashing, scope, expiry, the `token` command):
tests/api/test_api_tokens_*.py."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import ApiToken
from accounts.tokens import create_token, revoke_token
from tests.factories.people import token_client

pytestmark = pytest.mark.django_db

DATA_URLS = ["/api/v1/vcenters/", "/api/v1/vms/", "/api/v1/groups/", "/api/v1/jobs/", "/api/v1/points/"]


@pytest.mark.parametrize("url", [*DATA_URLS, "/api/v1/me/", "/api/schema/", "/api/docs/"])
def test_it_answers_401_in_json_without_a_token(url, inventory):
    response = Client().get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    if url.startswith("/api/v1/"):
        assert response.json() == {"detail": "Authentication credentials were not provided."}
    else:  # the schema answers in YAML and the Swagger page in text, but never with the schema
        assert "paths" not in response.content.decode() and "/api/v1/" not in response.content.decode()


def test_it_answers_401_to_a_wrong_token_and_a_post_without_one(inventory):
    wrong = Client(headers={"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"})
    response = wrong.get("/api/v1/vms/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}
    assert "web-01" not in response.content.decode()
    response = Client().post("/api/v1/backups/", {"group": inventory["group"].pk}, content_type="application/json")
    assert response.status_code == 401


@pytest.mark.smoke
def test_a_valid_token_works_and_me_names_the_token_never_its_key(admin, inventory):
    token, key = create_token(None, admin, "inventory script", ApiToken.Scope.READ, 30)
    client = Client(headers={"Authorization": f"Token {key}"})
    assert client.get("/api/v1/vms/").status_code == 200
    me = client.get("/api/v1/me/")
    assert me.json() == {
        "username": "alice",
        "roles": ["Backup administrator"],
        "token": {"name": "inventory script", "scope": "read", "expires": me.json()["token"]["expires"]},
    }
    assert key not in me.content.decode()
    assert me.json()["token"]["expires"].startswith(f"{token.expires:%Y-%m-%dT%H:%M}")


def test_a_revoked_token_and_an_inactive_users_token_stop_working(admin, helpdesk):
    alice, bob = token_client(admin), token_client(helpdesk)
    revoke_token(admin, ApiToken.objects.get(user=admin))
    assert alice.get("/api/v1/me/").status_code == 401
    helpdesk.is_active = False
    helpdesk.save()
    assert bob.get("/api/v1/me/").status_code == 401


def test_a_logged_in_browser_session_works_and_needs_csrf_to_change_anything(admin, inventory):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin)
    assert browser.get("/api/v1/vms/").status_code == 200
    response = browser.post("/api/v1/backups/", {"group": inventory["group"].pk}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


@pytest.mark.parametrize("url", [*DATA_URLS, "/api/v1/vcenters/1/"])
def test_a_user_without_a_role_gets_403_everywhere(url, api_norole, inventory):
    response = api_norole.get(url)
    assert response.status_code == 403 and set(response.json()) == {"detail"}


def test_a_user_without_a_role_may_still_ask_who_they_are(api_norole):
    assert api_norole.get("/api/v1/me/").json()["roles"] == []


def test_roles_are_enforced_like_the_pages(api_admin, api_helpdesk, api_auditor, inventory):
    group = inventory["group"]
    # Helpdesk: their own jobs yes; the inventory (their VMs come with their points), groups and backups no.
    assert api_helpdesk.get("/api/v1/vms/").status_code == 403
    assert api_helpdesk.get("/api/v1/jobs/").status_code == 200
    assert api_helpdesk.get("/api/v1/groups/").status_code == 403
    assert api_helpdesk.get(f"/api/v1/groups/{group.pk}/").status_code == 403
    assert (
        api_helpdesk.post("/api/v1/backups/", {"group": group.pk}, content_type="application/json").status_code == 403
    )
    # Auditor: reads everything, starts nothing.
    for url in DATA_URLS:
        assert api_auditor.get(url).status_code == 200, url
    assert api_auditor.post("/api/v1/backups/", {"group": group.pk}, content_type="application/json").status_code == 403
    # Administrator: both.
    assert api_admin.get("/api/v1/groups/").status_code == 200
    assert api_admin.post("/api/v1/backups/", {"group": group.pk}, content_type="application/json").status_code == 202
