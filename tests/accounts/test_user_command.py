"""`manage.py user`: add (one-time or chosen password), list (table and JSON), disable, enable, role,
reset-password; audited as the command line."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import profile_of
from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("user", *args, stdout=out)
    return out.getvalue()


def test_add_prints_a_one_time_password_once_and_the_user_must_change_it():
    out = run("add", "erin", "--role", "restore-operator", "--email", "erin@example.com")
    password = re.search(r"One-time password .*: (\S+)", out).group(1)
    erin = User.objects.get(username="erin")
    assert erin.check_password(password) and profile_of(erin).must_change_password
    assert [g.name for g in erin.groups.all()] == [RESTORE_OPERATOR] and erin.email == "erin@example.com"
    assert AuditEntry.objects.get(action="user.create").actor_name == "command line"


def test_add_reads_a_chosen_password_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough passphrase\n"))
    out = run("add", "frank", "--role", "auditor", "--role", "restore-operator", "--password-stdin")
    assert "One-time" not in out
    frank = User.objects.get(username="frank")
    assert frank.check_password("a-long-enough passphrase") and not profile_of(frank).must_change_password


def test_list_shows_every_user_as_a_table_or_json(admin, helpdesk):
    assert re.search(r"bob\s+Restore operator\s+local\s+never\s+active", run("list"))
    rows = {row["username"]: row for row in json.loads(run("list", "--json"))}
    assert rows["alice"]["roles"] == [BACKUP_ADMIN] and rows["bob"]["active"] is True


def test_disable_enable_and_role_change_the_user_and_are_audited(admin, helpdesk):
    run("disable", "bob")
    helpdesk.refresh_from_db()
    assert not helpdesk.is_active
    run("enable", "bob")
    run("role", "bob", "auditor", "restore-operator")
    helpdesk.refresh_from_db()
    assert helpdesk.is_active and sorted(g.name for g in helpdesk.groups.all()) == [AUDITOR, RESTORE_OPERATOR]
    actions = set(AuditEntry.objects.filter(actor_name="command line").values_list("action", flat=True))
    assert actions == {"user.disable", "user.enable", "user.roles"}


def test_reset_password_prints_a_new_one_time_password(helpdesk):
    password = re.search(r": (\S+)$", run("reset-password", "bob").strip()).group(1)
    helpdesk.refresh_from_db()
    assert helpdesk.check_password(password) and profile_of(helpdesk).must_change_password


def test_mistakes_are_one_sentence(admin):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("disable", "nobody")
    with pytest.raises(CommandError, match="No such role: wizard"):
        run("role", "alice", "wizard")
    with pytest.raises(CommandError, match="already exists"):
        run("add", "alice", "--role", "auditor")
    with pytest.raises(CommandError, match="last active administrator"):
        run("disable", "alice")
