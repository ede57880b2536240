"""`manage.py token create/list/revoke`, and DRF authtoken keys of an older installation carried
into ApiToken by accounts' migration 0002 so existing scripts keep working."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from accounts.models import ApiToken
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_prints_only_the_key_once_and_audits_without_it(helpdesk, caplog):
    with caplog.at_level(logging.DEBUG):
        out, err = run("create", "bob", "--name", "backup check", "--scope", "operate", "--expires-days", "30")
    key = out.strip()
    assert key.startswith("vmb_") and "\n" not in key
    assert key not in err and key not in caplog.text and "shown once" in err.lower()
    token = ApiToken.objects.get(user=helpdesk)
    assert token.scope == "operate" and token.expires is not None and token.name == "backup check"
    audit = AuditEntry.objects.get(action="api.token_create")
    assert audit.actor_name == "command line" and key not in json.dumps(audit.details)
    assert Client(headers={"Authorization": f"Token {key}"}).get("/api/v1/me/").status_code == 200


def test_list_shows_tokens_never_keys_and_revoke_stops_one(helpdesk, admin):
    key = run("create", "bob", "--name", "laptop")[0].strip()
    run("create", "alice", "--name", "ci", "--scope", "operate")
    rows = json.loads(run("list", "--json")[0])
    assert [(r["user"], r["name"], r["scope"], r["state"]) for r in rows] == [
        ("alice", "ci", "operate", "active"),
        ("bob", "laptop", "read", "active"),
    ]
    assert key not in json.dumps(rows)
    text = run("list", "bob")[0]
    assert "laptop" in text and "ci" not in text

    bobs = rows[1]["id"]
    run("revoke", str(bobs))
    assert json.loads(run("list", "bob", "--json")[0])[0]["state"] == "revoked"
    assert Client(headers={"Authorization": f"Token {key}"}).get("/api/v1/me/").status_code == 401
    with pytest.raises(CommandError, match="revoked already"):
        run("revoke", str(bobs))


def test_it_refuses_unknown_and_inactive_users_and_bad_expiry(helpdesk):
    with pytest.raises(CommandError, match="No user"):
        run("create", "mallory")
    with pytest.raises(CommandError, match="1 to 3650 days"):
        run("create", "bob", "--expires-days", "0")
    helpdesk.is_active = False
    helpdesk.save()
    with pytest.raises(CommandError, match="not active"):
        run("create", "bob")
    with pytest.raises(CommandError, match="No API token"):
        run("revoke", "999999")


def test_drf_tokens_of_an_older_installation_become_hashed_api_tokens(helpdesk):
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
            "user_id integer NOT NULL UNIQUE)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now() - interval '3 days', %s)", [old_key, helpdesk.pk])
    migration = importlib.import_module("accounts.migrations.0002_api_tokens_from_drf_authtoken")
    with connection.schema_editor() as editor:
        migration.migrate_keys(apps, editor)

    token = ApiToken.objects.get(user=helpdesk)
    assert token.key_hash == hashlib.sha256(old_key.encode()).hexdigest()
    assert (token.name, token.scope, token.expires) == ("migrated", "operate", None)
    assert "authtoken_token" not in connection.introspection.table_names()  # no plain keys left behind
    assert AuditEntry.objects.filter(action="api.token_migrate", target_id=str(token.pk)).exists()
    client = Client(headers={"Authorization": f"Token {old_key}"})
    assert client.get("/api/v1/me/").json()["token"]["name"] == "migrated"
