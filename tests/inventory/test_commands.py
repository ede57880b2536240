"""`manage.py vms` and `manage.py inventory sync`."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from jobs.models import JobRun
from protection.membership import refresh_membership
from protection.models import ProtectionGroup
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def folders():
    folders = create_test_tree(create_test_vcenter(), ["Prod", "Prod/Web", "Dev"])
    create_test_vm(folders["Prod/Web"], "web-01")
    create_test_vm(folders["Dev"], "<b>dev</b>", power_state="poweredOff")
    group = ProtectionGroup.objects.create(name="Web")
    group.folders.add(folders["Prod/Web"])
    refresh_membership()
    return folders


def test_vms_lists_path_power_and_group_as_json(folders):
    rows = {row["name"]: row for row in json.loads(run("vms", "--json"))}
    assert rows["web-01"]["path"] == "DC1/Prod/Web/web-01" and rows["web-01"]["group"] == "Web"
    assert rows["<b>dev</b>"]["power_state"] == "poweredOff" and rows["<b>dev</b>"]["group"] is None


def test_vms_filters_by_folder_subtree_and_protection(folders):
    assert [r["name"] for r in json.loads(run("vms", "--folder", "DC1/Prod", "--json"))] == ["web-01"]
    assert [r["name"] for r in json.loads(run("vms", "--unprotected", "--json"))] == ["<b>dev</b>"]
    table = run("vms")
    assert table.splitlines()[0].split() == ["NAME", "PATH", "POWER", "GROUP"] and "web-01" in table


def test_inventory_sync_queues_one_job_per_vcenter_and_not_twice(
    folders, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert "queued" in run("inventory", "sync")
        run("inventory", "sync", "vc1")
    assert JobRun.objects.filter(kind="inventory.sync").count() == 1
    with pytest.raises(CommandError, match="No vCenter connection named 'nope'"):
        run("inventory", "sync", "nope")
