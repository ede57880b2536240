"""Who may call the API: tokens (missing, wrong, revoked, inactive user), sessions with CSRF, the
apitoken command (shown once, never logged or audited), and roles enforced like the pages."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from audit.models import AuditEntry
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
def test_a_valid_token_works_and_me_says_whether_one_exists_never_which(admin, inventory):
    client = token_client(admin)
    key = Token.objects.get(user=admin).key
    assert client.get("/api/v1/vms/").status_code == 200
    me = client.get("/api/v1/me/")
    assert me.json() == {"username": "alice", "roles": ["Backup administrator"], "has_token": True}
    assert key not in me.content.decode()


def test_a_revoked_token_and_an_inactive_users_token_stop_working(admin, helpdesk):
    alice, bob = token_client(admin), token_client(helpdesk)
    call_command("apitoken", "alice", "--revoke", stderr=io.StringIO())
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


def test_apitoken_prints_the_token_once_refuses_a_second_and_rotates(helpdesk, caplog):
    out, err = io.StringIO(), io.StringIO()
    with caplog.at_level(logging.DEBUG):
        call_command("apitoken", "bob", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert len(key) == 40 and Token.objects.get(user=helpdesk).key == key
    assert key not in err.getvalue() and key not in caplog.text
    with pytest.raises(CommandError, match="has an API token already"):
        call_command("apitoken", "bob", stdout=io.StringIO(), stderr=io.StringIO())
    assert Client(headers={"Authorization": f"Token {key}"}).get("/api/v1/me/").status_code == 200

    out = io.StringIO()
    call_command("apitoken", "bob", "--rotate", stdout=out, stderr=io.StringIO())
    new_key = out.getvalue().strip()
    assert new_key != key
    assert Client(headers={"Authorization": f"Token {key}"}).get("/api/v1/me/").status_code == 401
    assert Client(headers={"Authorization": f"Token {new_key}"}).get("/api/v1/me/").status_code == 200
    audit = AuditEntry.objects.filter(action__startswith="api.", target_id=str(helpdesk.pk))
    assert sorted(audit.values_list("action", flat=True)) == ["api.token_create", "api.token_rotate"]
    assert all(e.actor_name == "command line" for e in audit)
    assert not any(k in str(e.details) + e.target_label for e in audit for k in (key, new_key))


def test_apitoken_refuses_unknown_and_inactive_users(helpdesk):
    with pytest.raises(CommandError, match="No user"):
        call_command("apitoken", "mallory", stdout=io.StringIO())
    helpdesk.is_active = False
    helpdesk.save()
    with pytest.raises(CommandError, match="not active"):
        call_command("apitoken", "bob", stdout=io.StringIO())


@pytest.mark.parametrize("url", [*DATA_URLS, "/api/v1/vcenters/1/"])
def test_a_user_without_a_role_gets_403_everywhere(url, api_norole, inventory):
    response = api_norole.get(url)
    assert response.status_code == 403 and set(response.json()) == {"detail"}


def test_a_user_without_a_role_may_still_ask_who_they_are(api_norole):
    assert api_norole.get("/api/v1/me/").json() == {"username": "dave", "roles": [], "has_token": True}


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
