"""`make run`'s first administrator (tools/run.py ensure_admin): created with a one-time password when
there is none, and an existing account's password is never reset."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accounts import actions
from accounts.models import profile_of
from accounts.roles import AUDITOR, BACKUP_ADMIN
from tests.factories.people import PASSWORD
from tools.run import ensure_admin

pytestmark = pytest.mark.django_db


def test_make_run_creates_admin_with_a_one_time_password_kept_for_the_owner_only(tmp_path, capsys):
    ensure_admin(tmp_path)
    admin = User.objects.get(username="admin")
    kept = tmp_path / "initial-admin-password"
    password = kept.read_text().strip()
    assert admin.check_password(password) and admin.groups.filter(name=BACKUP_ADMIN).exists()
    assert profile_of(admin).must_change_password
    assert kept.stat().st_mode & 0o077 == 0
    assert f"with password {password}" in capsys.readouterr().out


def test_make_run_never_resets_an_existing_account_s_password(tmp_path, capsys):
    old = User.objects.create_user(username="admin", password=PASSWORD)  # no role: no administrator at all
    ensure_admin(tmp_path)
    old.refresh_from_db()
    assert old.check_password(PASSWORD) and not old.groups.exists()
    assert not (tmp_path / "initial-admin-password").exists()
    assert "manage.py user add NAME --role administrator" in capsys.readouterr().out


def test_make_run_leaves_everything_alone_while_an_administrator_is_active(tmp_path, admin):
    actions.set_roles(None, admin, [BACKUP_ADMIN, AUDITOR])
    ensure_admin(tmp_path)
    assert not User.objects.filter(username="admin").exists()
