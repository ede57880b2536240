"""Logins, logouts and role changes reach the audit log; failed logins only the application log (one
audit row per lockout instead: tests/accounts/test_sign_in_throttle.py); a password never either."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from accounts.roles import AUDITOR, RESTORE_OPERATOR
from audit.models import AuditEntry
from tests.factories.people import PASSWORD

pytestmark = pytest.mark.django_db
WRONG = "Tr0ub4dor&3-not-the-password"


def everything_stored() -> str:
    return json.dumps(list(AuditEntry.objects.values()), default=str)


def test_a_login_and_a_logout_appear_in_the_audit_log_and_a_failed_login_in_the_log(admin, as_auditor, caplog):
    client = Client(REMOTE_ADDR="192.0.2.10")
    response = client.post(reverse("login"), {"username": "alice", "password": WRONG})
    assert response.status_code == 200  # the form again, with its error
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.post(reverse("logout")).status_code == 302

    assert not AuditEntry.objects.filter(action="auth.login_failed").exists()
    failed = [r.getMessage() for r in caplog.records if r.name == "audit.sign_in"]
    assert failed == ["Failed sign-in for 'alice' from {'ip': '192.0.2.10'}"]
    assert WRONG not in caplog.text
    login = AuditEntry.objects.filter(action="auth.login", actor__username="alice").latest("created")
    assert login.details == {"ip": "192.0.2.10"} and login.target_label == "alice"
    logout = AuditEntry.objects.get(action="auth.logout")
    assert logout.actor_name == "alice" and logout.details["ip"] == "192.0.2.10"

    # The password tried, the real one and Django's masked placeholder are stored nowhere.
    stored = everything_stored()
    assert WRONG not in stored and PASSWORD not in stored and "*****" not in stored
    assert "password" not in stored.lower()

    # ...and the auditor finds both on the page, filtered on "auth".
    response = as_auditor.get(reverse("audit:index"), {"action": "auth", "target": "alice"})
    actions = [row.action for row, _ in response.context["rows"]]
    assert {"auth.login", "auth.logout"} <= set(actions)
    assert actions.index("auth.logout") < actions.index("auth.login")  # newest first


def test_a_failed_login_for_an_unknown_user_writes_no_audit_row_and_logs_what_was_tried(db, caplog):
    Client(REMOTE_ADDR="198.51.100.7").post(reverse("login"), {"username": "mallory\nforged", "password": WRONG})
    assert not AuditEntry.objects.exists()
    failed = [r.getMessage() for r in caplog.records if r.name == "audit.sign_in"]
    assert failed == ["Failed sign-in for 'mallory\\nforged' from {'ip': '198.51.100.7'}"]  # one line, escaped
    assert WRONG not in caplog.text


def test_a_forwarded_address_is_kept_apart_from_the_peer_address(admin):
    client = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    details = AuditEntry.objects.get(action="auth.login").details
    assert details["ip"] == "127.0.0.1" and details["forwarded_for"] == "203.0.113.5"


def test_role_changes_are_audited_however_they_are_made(norole):
    norole.groups.add(Group.objects.get(name=AUDITOR))
    Group.objects.get(name=RESTORE_OPERATOR).user_set.add(norole)
    norole.groups.remove(Group.objects.get(name=AUDITOR))
    norole.groups.clear()
    rows = list(AuditEntry.objects.filter(action="account.roles", target_label="dave").order_by("id"))
    assert [r.details for r in rows] == [
        {"added": [AUDITOR]},
        {"added": [RESTORE_OPERATOR]},
        {"removed": [AUDITOR]},
        {"removed": [RESTORE_OPERATOR]},
    ]
