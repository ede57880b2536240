"""Local users' life cycle through accounts.actions: created with a one-time password, roles set,
disabled (sessions and API tokens stop at once), enabled, passwords reset; every change audited and
no password ever in the audit log."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from accounts import actions
from accounts.models import ApiToken, Profile, profile_of
from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from audit.models import AuditEntry
from tests.factories.people import PASSWORD

pytestmark = pytest.mark.django_db


def _audit_text() -> str:
    return json.dumps(list(AuditEntry.objects.values("action", "target_label", "details")))


def test_a_new_user_gets_a_one_time_password_that_must_be_changed_and_is_never_audited(admin):
    created = actions.create_user(admin, "erin", roles=[RESTORE_OPERATOR], email="erin@example.com")
    user = User.objects.get(username="erin")
    assert created.one_time_password and user.check_password(created.one_time_password)
    assert profile_of(user).must_change_password and profile_of(user).sign_in == Profile.SignIn.LOCAL
    assert list(user.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
    row = AuditEntry.objects.get(action="user.create")
    assert row.actor_name == "alice" and row.details["roles"] == [RESTORE_OPERATOR]
    assert created.one_time_password not in _audit_text()


def test_a_chosen_password_is_validated_and_need_not_be_changed():
    with pytest.raises(actions.UserRefused, match="too short"):
        actions.create_user("command line", "frank", roles=[AUDITOR], password="short")
    created = actions.create_user("command line", "frank", roles=[AUDITOR], password="a-long-enough passphrase")
    assert created.one_time_password is None and not profile_of(created.user).must_change_password


def test_a_taken_name_an_unknown_role_or_no_role_is_refused(admin):
    with pytest.raises(actions.UserRefused, match="already exists"):
        actions.create_user(admin, "ALICE", roles=[AUDITOR])
    with pytest.raises(actions.UserRefused, match="No such role"):
        actions.create_user(admin, "gina", roles=["Superhero"])
    with pytest.raises(actions.UserRefused, match="Give the user a role"):
        actions.create_user(admin, "gina", roles=[])
    assert not User.objects.filter(username="gina").exists()


def test_disabling_a_user_ends_their_sessions_and_revokes_their_tokens_at_once(admin, helpdesk):
    browser = Client()
    assert browser.login(username="bob", password=PASSWORD)
    assert browser.get(reverse("recovery:index")).status_code == 200
    token = ApiToken.objects.create(user=helpdesk, name="script", prefix="abc", key_hash="0" * 64)

    actions.disable_user(admin, helpdesk)

    assert browser.get(reverse("recovery:index")).status_code == 302  # back to the login page
    token.refresh_from_db()
    assert token.revoked is not None
    row = AuditEntry.objects.get(action="user.disable")
    assert row.details == {"sessions_ended": 1, "tokens_revoked": 1}
    actions.enable_user(admin, helpdesk)
    token.refresh_from_db()
    assert token.revoked is not None  # enabling does not bring tokens back
    assert AuditEntry.objects.filter(action="user.enable", target_label="bob").exists()


def test_the_last_administrator_cannot_be_disabled_or_lose_the_role(admin, auditor):
    with pytest.raises(actions.UserRefused, match="last active administrator"):
        actions.disable_user(auditor, admin)
    with pytest.raises(actions.UserRefused, match="last active administrator"):
        actions.set_roles(auditor, admin, [AUDITOR])
    with pytest.raises(actions.UserRefused, match="your own account"):
        actions.disable_user(admin, admin)
    admin.refresh_from_db()
    assert admin.is_active and admin.groups.filter(name=BACKUP_ADMIN).exists()


def test_roles_are_set_exactly_and_audited_with_the_actor(admin, auditor):
    actions.set_roles(admin, auditor, [RESTORE_OPERATOR, AUDITOR])
    assert sorted(auditor.groups.values_list("name", flat=True)) == sorted([AUDITOR, RESTORE_OPERATOR])
    row = AuditEntry.objects.get(action="user.roles")
    assert row.actor_name == "alice" and row.details["roles_before"] == [AUDITOR]


def test_a_reset_gives_a_new_one_time_password_and_signs_the_user_out(admin, helpdesk):
    browser = Client()
    assert browser.login(username="bob", password=PASSWORD)
    password = actions.reset_password(admin, helpdesk)
    helpdesk.refresh_from_db()
    assert helpdesk.check_password(password) and not helpdesk.check_password(PASSWORD)
    assert profile_of(helpdesk).must_change_password
    assert browser.get(reverse("recovery:index")).status_code == 302
    assert password not in _audit_text()


def test_directory_users_keep_their_roles_and_passwords_in_the_directory(admin, helpdesk):
    Profile.objects.create(user=helpdesk, sign_in=Profile.SignIn.DIRECTORY, external_id="CN=bob,DC=corp")
    with pytest.raises(actions.UserRefused, match="directory"):
        actions.reset_password(admin, helpdesk)
    with pytest.raises(actions.UserRefused, match="group mappings"):
        actions.set_roles(admin, helpdesk, [AUDITOR])
    with pytest.raises(actions.UserRefused, match="directory"):
        actions.change_own_password(helpdesk, "a-long-enough passphrase")
