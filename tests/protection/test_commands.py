"""`manage.py group ...` and `manage.py backup ...`."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from jobs.models import JobRun
from protection.models import ProtectionGroup
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    folders = create_test_tree(create_test_vcenter(), ["Prod", "Prod/Web", "Dev"])
    for name in ("web-01", "web-02"):
        create_test_vm(folders["Prod/Web"], name)
    create_test_vm(folders["Dev"], "dev-01")
    return folders


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_list_show_and_delete(tree):
    out = run(
        "group",
        "create",
        "Prod",
        "--folder",
        "DC1/Prod",
        "--exclude-vm",
        "web-02",
        "--schedule",
        "mon,fri 23:00",
        "--local-days",
        "30",
        "--vault-daily",
        "7",
        "--vault-weekly",
        "4",
        "--vault-monthly",
        "6",
        "--vault-yearly",
        "1",
    )
    assert "Created Prod: 1 VMs" in out
    (row,) = json.loads(run("group", "list", "--json"))
    assert row == {"name": "Prod", "members": 1, "schedule": "Mon, Fri at 23:00 (UTC)", "paused": False}
    shown = json.loads(run("group", "show", "Prod", "--json"))
    assert shown["vms"] == ["web-01"] and shown["excluded_vms"] == ["web-02"]
    assert shown["policy"]["local_days"] == 30 and shown["policy"]["vault_monthly"] == 6
    assert "Deleted Prod" in run("group", "delete", "Prod")
    assert not ProtectionGroup.objects.exists()
    assert AuditEntry.objects.filter(action="protection.group_create", actor_name="system").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folder", "DC1/Nowhere"], "No folder with the path 'DC1/Nowhere'"),
        (["--vm", "ghost"], "No VM named 'ghost'"),
        (["--folder", "DC1/Prod", "--schedule", "daily 24:00"], "schedule: '24:00' is not a time of day"),
        (["--folder", "DC1/Prod", "--local-days", "500"], "local_days: Local retention is 1 to 448 days."),
        ([], "Select at least one --folder or --vm."),
    ],
)
def test_bad_input_is_refused_with_one_message(tree, args, message):
    with pytest.raises(CommandError, match=message):
        run("group", "create", "X", *args)
    assert not ProtectionGroup.objects.exists()


def test_the_one_group_rule_on_the_command_line(tree):
    run("group", "create", "Prod", "--folder", "DC1/Prod")
    with pytest.raises(CommandError, match="web-01 is already protected by group “Prod”"):
        run("group", "create", "Single", "--vm", "web-01")


def test_backup_queues_jobs_for_vms_or_a_group(tree, redis_conn, django_capture_on_commit_callbacks):
    run("group", "create", "Prod", "--folder", "DC1/Prod")
    with django_capture_on_commit_callbacks(execute=True):
        assert "Backup of web-01: queued" in run("backup", "web-01")
        out = run("backup", "--group", "Prod")
    assert "Backup of web-02: queued" in out and "web-01" not in out  # already queued
    assert JobRun.objects.filter(kind="protection.backup").count() == 2
    with pytest.raises(CommandError, match="dev-01 is not in a protection group"):
        run("backup", "dev-01")
