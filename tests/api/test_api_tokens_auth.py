"""API tokens at the API: stored as a hash only, refused when expired, revoked or of a disabled user,
read-only tokens refused anything but reading, and last use recorded without a write per request."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import create_token, revoke_token
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def client_with(key: str) -> Client:
    return Client(headers={"Authorization": f"Token {key}"})


def test_a_token_is_stored_as_its_sha256_only_and_the_key_is_nowhere_else(admin):
    token, key = create_token(admin, admin, "nightly report", ApiToken.Scope.READ, 30)
    assert key.startswith("vmb_") and len(key) >= 40
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(row, default=str)
    assert row["prefix"] == key[:8] and key[8:] not in json.dumps(row, default=str)
    audit = AuditEntry.objects.get(action="api.token_create")
    assert audit.target_id == str(token.pk) and key not in json.dumps(audit.details) + audit.target_label
    assert audit.details == {
        "user": "alice",
        "name": "nightly report",
        "scope": "read",
        "expires": row["expires"].isoformat(),
    }


def test_a_valid_token_answers_and_a_wrong_one_does_not(admin, inventory):
    _, key = create_token(admin, admin, "script")
    assert client_with(key).get("/api/v1/vms/").status_code == 200
    assert client_with(key + "x").get("/api/v1/vms/").status_code == 401
    assert client_with("vmb_" + "A" * 43).get("/api/v1/vms/").status_code == 401


def test_an_expired_token_is_refused(admin):
    token, key = create_token(admin, admin, "short", ApiToken.Scope.READ, 1)
    assert client_with(key).get("/api/v1/me/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    response = client_with(key).get("/api/v1/me/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}


def test_a_revoked_token_is_refused_and_the_revocation_audited(admin, helpdesk):
    token, key = create_token(helpdesk, helpdesk, "laptop")
    revoke_token(admin, token)  # an administrator may revoke anyone's
    assert client_with(key).get("/api/v1/me/").status_code == 401
    audit = AuditEntry.objects.get(action="api.token_revoke")
    assert audit.actor == admin and audit.target_id == str(token.pk) and audit.details["user"] == "bob"


def test_a_disabled_users_token_is_refused(helpdesk):
    _, key = create_token(helpdesk, helpdesk, "laptop")
    helpdesk.is_active = False
    helpdesk.save()
    assert client_with(key).get("/api/v1/me/").status_code == 401


def test_a_read_only_token_may_read_but_not_start_anything(admin, inventory):
    _, key = create_token(admin, admin, "dashboard", ApiToken.Scope.READ)
    reader = client_with(key)
    assert reader.get("/api/v1/groups/").status_code == 200
    response = reader.post("/api/v1/backups/", {"group": inventory["group"].pk}, content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "This API token is read-only: it may only read (GET, HEAD, OPTIONS). "
        "Create a read-and-operate token to start or change anything."
    }


def test_an_operate_token_may_do_what_the_role_allows(admin, auditor, inventory):
    _, key = create_token(admin, admin, "automation", ApiToken.Scope.OPERATE)
    body = {"group": inventory["group"].pk}
    assert client_with(key).post("/api/v1/backups/", body, content_type="application/json").status_code == 202
    _, carols = create_token(auditor, auditor, "automation", ApiToken.Scope.OPERATE)
    assert client_with(carols).post("/api/v1/backups/", body, content_type="application/json").status_code == 403


def test_last_use_is_recorded_at_most_once_a_minute(admin):
    token, key = create_token(admin, admin, "poller")
    assert token.last_used is None
    client = client_with(key)
    client.get("/api/v1/me/")
    first = ApiToken.objects.get(pk=token.pk).last_used
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get("/api/v1/me/").status_code == 200
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get(pk=token.pk).last_used == first

    ApiToken.objects.filter(pk=token.pk).update(last_used=first - timedelta(minutes=2))
    client.get("/api/v1/me/")
    assert ApiToken.objects.get(pk=token.pk).last_used > first


def test_me_names_the_token_in_use(helpdesk):
    _, key = create_token(helpdesk, helpdesk, "laptop", ApiToken.Scope.OPERATE, 90)
    token = client_with(key).get("/api/v1/me/").json()["token"]
    assert token["name"] == "laptop" and token["scope"] == "operate" and token["expires"] is not None
