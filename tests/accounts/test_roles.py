"""Each role sees what it should and is refused the rest, in the views themselves."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from audit.models import AuditEntry
from jobs.models import JobRun

pytestmark = pytest.mark.django_db

PAGES = ["dashboard:overview", "inventory:index", "protection:index", "recovery:index", "jobs:list",
         "vault:index", "teams:settings"]  # fmt: skip


def a_running_job() -> JobRun:
    return JobRun.objects.create(kind="system.check", title="System check", status=JobRun.Status.RUNNING)


def test_the_three_roles_exist_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= {BACKUP_ADMIN, RESTORE_OPERATOR, AUDITOR}


@pytest.mark.smoke
@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.smoke
@pytest.mark.parametrize("page", PAGES)
def test_an_administrator_reaches_every_page(as_admin, page):
    assert as_admin.get(reverse(page)).status_code == 200


def test_an_administrator_can_start_and_cancel_jobs(as_admin, django_capture_on_commit_callbacks, redis_conn):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_admin.post(reverse("jobs:system_check"))
    assert response.status_code == 302
    run = JobRun.objects.get()
    response = as_admin.post(reverse("jobs:cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == JobRun.Status.CANCELLED
    assert AuditEntry.objects.filter(action="job.cancel", actor__username="alice").exists()


def test_an_administrator_sees_users_and_roles(as_admin, helpdesk):
    body = as_admin.get(reverse("teams:settings")).content.decode()
    assert "Users and roles" in body and "bob" in body and RESTORE_OPERATOR in body


def test_a_restore_operator_follows_jobs_but_cannot_start_or_cancel_them(as_helpdesk, helpdesk):
    run = a_running_job()
    run.created_by = helpdesk  # their own: others' jobs are not theirs to see (tests/scope)
    run.save()
    assert as_helpdesk.get(reverse("jobs:list")).status_code == 200
    assert as_helpdesk.get(reverse("jobs:row", args=[run.pk])).status_code == 200
    assert as_helpdesk.post(reverse("jobs:system_check")).status_code == 403
    assert as_helpdesk.post(reverse("jobs:cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == JobRun.Status.RUNNING and not run.cancel_requested
    assert JobRun.objects.count() == 1


def test_a_restore_operator_does_not_see_users(as_helpdesk, admin):
    body = as_helpdesk.get(reverse("teams:settings")).content.decode()
    assert "Users and roles" not in body and "alice" not in body


def test_a_restore_operator_holds_no_permission_that_changes_protection_or_deletes(helpdesk):
    perms = helpdesk.get_all_permissions()
    assert "recovery.restore_files" in perms
    assert not {p for p in perms if p.split(".")[1].startswith(("add_", "change_", "delete_"))}
    assert "recovery.restore_vms" not in perms


def test_an_auditor_reads_everything_and_changes_nothing(as_auditor, auditor):
    run = a_running_job()
    for page in PAGES:
        assert as_auditor.get(reverse(page)).status_code == 200, page
    assert as_auditor.get(reverse("jobs:detail", args=[run.pk])).status_code == 200
    assert as_auditor.post(reverse("jobs:system_check")).status_code == 403
    assert as_auditor.post(reverse("jobs:cancel", args=[run.pk])).status_code == 403
    assert all(p.split(".")[1].startswith(("view_",)) for p in auditor.get_all_permissions())


def test_a_user_without_a_role_sees_no_jobs(as_norole):
    run = a_running_job()
    assert as_norole.get(reverse("jobs:list")).status_code == 403
    assert as_norole.get(reverse("jobs:row", args=[run.pk])).status_code == 403
    assert as_norole.post(reverse("jobs:cancel", args=[run.pk])).status_code == 403


def test_partials_check_permissions_like_their_pages(as_norole):
    run = a_running_job()
    response = as_norole.get(reverse("jobs:detail", args=[run.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 403


def test_forms_are_refused_without_a_csrf_token(admin):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(reverse("jobs:system_check")).status_code == 403


def test_createadmin_makes_a_backup_administrator_and_audits_it(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough passphrase\n"))
    call_command("createadmin", "root-admin", "--password-stdin")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="root-admin")
    assert user.groups.filter(name=BACKUP_ADMIN).exists()
    assert user.check_password("a-long-enough passphrase")
    assert AuditEntry.objects.filter(action="user.create", target_label="root-admin").exists()


def test_createadmin_refuses_a_weak_password(monkeypatch):
    import io

    from django.core.management.base import CommandError

    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("createadmin", "weak", "--password-stdin")


def test_createadmin_if_none_does_nothing_once_an_admin_exists(admin, capsys):
    call_command("createadmin", "second", "--generate", "--if-none")
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="second").exists()
