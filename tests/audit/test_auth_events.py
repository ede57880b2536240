"""Logins, logouts, failed logins and role changes reach the audit log; a password never does."""

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


def test_a_login_a_failed_login_and_a_logout_appear_in_the_audit_log(admin, as_auditor):
    client = Client(REMOTE_ADDR="192.0.2.10")
    response = client.post(reverse("login"), {"username": "alice", "password": WRONG})
    assert response.status_code == 200  # the form again, with its error
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.post(reverse("logout")).status_code == 302

    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.actor is None and failed.actor_name == "anonymous"
    assert failed.target_label == "alice"
    assert failed.details == {"username": "alice", "ip": "192.0.2.10"}
    login = AuditEntry.objects.filter(action="auth.login", actor__username="alice").latest("created")
    assert login.details == {"ip": "192.0.2.10"} and login.target_label == "alice"
    logout = AuditEntry.objects.get(action="auth.logout")
    assert logout.actor_name == "alice" and logout.details["ip"] == "192.0.2.10"

    # The password tried, the real one and Django's masked placeholder are stored nowhere.
    stored = everything_stored()
    assert WRONG not in stored and PASSWORD not in stored and "*****" not in stored
    assert "password" not in stored.lower()

    # ...and the auditor finds all three on the page, filtered on "auth".
    response = as_auditor.get(reverse("audit:index"), {"action": "auth", "target": "alice"})
    actions = [row.action for row, _ in response.context["rows"]]
    assert {"auth.login", "auth.login_failed", "auth.logout"} <= set(actions)
    assert actions.index("auth.logout") < actions.index("auth.login_failed")  # newest first


def test_a_failed_login_for_an_unknown_user_names_what_was_tried(db):
    Client(REMOTE_ADDR="198.51.100.7").post(reverse("login"), {"username": "mallory", "password": WRONG})
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.details == {"username": "mallory", "ip": "198.51.100.7"}
    assert WRONG not in everything_stored()


def test_a_forwarded_address_is_kept_apart_from_the_peer_address(db):
    Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5").post(
        reverse("login"), {"username": "nobody", "password": WRONG}
    )
    details = AuditEntry.objects.get(action="auth.login_failed").details
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
