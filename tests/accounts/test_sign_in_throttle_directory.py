"""The sign-in throttle covers directory (LDAP) accounts too: it sits in the login form, before every
authentication backend. Against the real slapd of tests/fixtures/ldap.py. A refusal with its own
sentence (the directory unreachable) is not a wrong password and never counts towards a lockout."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.roles import RESTORE_OPERATOR
from audit.models import AuditEntry
from teams.directory_backend import UNAVAILABLE
from teams.models import DirectoryConfig, GroupMapping
from tools.ldap_server import GROUPS, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn, password_of

pytestmark = pytest.mark.django_db
LIMIT = 3
LOCKED = "Too many failed sign-ins for this account from your address"


def configure(uri: str, ca_file: str) -> None:
    config = DirectoryConfig.load()
    values = {
        "enabled": True,
        "server_uri": uri,
        "ca_file": ca_file,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": "ou=people,dc=corp,dc=example",
        "user_search_filter": "(uid=%(user)s)",
        "group_search_base": GROUPS,
        "group_type": DirectoryConfig.GroupType.GROUP_OF_NAMES,
    }
    for name, value in values.items():
        setattr(config, name, value)
    config.save()


@pytest.fixture
def directory(slapd: Slapd, redis_conn: Any, settings: Any) -> Slapd:
    settings.LOGIN_FAILURE_LIMIT = LIMIT
    configure(slapd.uri, str(slapd.ca_file))
    GroupMapping.objects.create(
        source=GroupMapping.Source.DIRECTORY,
        external_group=group_dn("Helpdesk"),
        role=Group.objects.get(name=RESTORE_OPERATOR),
    )
    return slapd


def sign_in(username: str, password: str) -> Any:
    return Client(REMOTE_ADDR="203.0.113.9").post("/login/", {"username": username, "password": password})


def test_a_directory_account_is_locked_after_wrong_passwords_and_its_right_one_refused(directory):
    assert sign_in("dana", password_of("dana")).status_code == 302  # a directory user who signs in
    for _ in range(LIMIT):
        sign_in("dana", "not-her-password")
    response = sign_in("dana", password_of("dana"))
    assert response.status_code == 200 and LOCKED in response.content.decode()
    entry = AuditEntry.objects.get(action="user.locked_out")
    assert entry.target_label == "dana" and entry.details["attempts"] == LIMIT


def test_an_unreachable_directory_never_locks_anyone_out(directory):
    configure("ldaps://127.0.0.1:9", str(directory.ca_file))
    for _ in range(LIMIT + 1):
        assert UNAVAILABLE in sign_in("dana", password_of("dana")).content.decode()
    configure(directory.uri, str(directory.ca_file))
    assert sign_in("dana", password_of("dana")).status_code == 302
    assert not AuditEntry.objects.filter(action="user.locked_out").exists()
