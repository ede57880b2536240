"""Auto-detect: which group covers which VM, and the audit trail of joins and departures."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from protection.membership import refresh_membership
from protection.models import ProtectionGroup
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


@pytest.fixture
def folders():
    return create_test_tree(create_test_vcenter(), ["Prod", "Prod/Web", "Prod/Web/Edge", "Dev"])


def group(name: str, *folders, vms=(), excluded=()) -> ProtectionGroup:
    g = ProtectionGroup.objects.create(name=name)
    g.folders.add(*folders)
    g.vms.add(*vms)
    g.excluded_vms.add(*excluded)
    return g


def test_a_folder_selection_covers_vms_in_subfolders(folders):
    prod = group("Prod", folders["Prod"])
    deep = create_test_vm(folders["Prod/Web/Edge"], "edge-01")
    other = create_test_vm(folders["Dev"], "dev-01")
    assert refresh_membership() == {"joined": 1, "left": 0}
    deep.refresh_from_db()
    other.refresh_from_db()
    assert deep.protection_group == prod and other.protection_group is None
    join = AuditEntry.objects.get(action="protection.vm_joined")
    assert (join.actor_name, join.target_label, join.details["group"]) == ("auto-detect", "edge-01", "Prod")
    assert join.details["reason"] == "in folder DC1/Prod"


def test_a_folder_name_prefix_is_not_a_subfolder(folders):
    prod = create_test_tree(create_test_vcenter("vc2"), ["Prod", "Production"], dc_name="DC1")
    group("Prod", prod["Prod"])
    vm = create_test_vm(prod["Production"], "lookalike")
    refresh_membership()
    vm.refresh_from_db()
    assert vm.protection_group is None


def test_the_same_path_in_another_vcenter_is_not_covered(folders):
    group("Prod", folders["Prod"])
    elsewhere = create_test_tree(create_test_vcenter("vc2"), ["Prod"])
    vm = create_test_vm(elsewhere["Prod"], "twin")
    refresh_membership()
    vm.refresh_from_db()
    assert vm.protection_group is None


def test_exclusions_and_do_not_protect_win_over_folders(folders):
    excluded = create_test_vm(folders["Prod"], "excluded")
    marked = create_test_vm(folders["Prod"], "marked", do_not_protect=True)
    group("Prod", folders["Prod"], excluded=[excluded])
    refresh_membership()
    for vm in (excluded, marked):
        vm.refresh_from_db()
        assert vm.protection_group is None


def test_a_vm_selected_by_name_belongs_to_that_group_even_inside_another_groups_folder(folders):
    vm = create_test_vm(folders["Prod/Web"], "special")
    group("Prod", folders["Prod"])
    chosen = group("Special", vms=[vm])
    refresh_membership()
    vm.refresh_from_db()
    assert vm.protection_group == chosen


def test_the_deepest_selected_folder_wins(folders):
    vm = create_test_vm(folders["Prod/Web/Edge"], "edge")
    group("Prod", folders["Prod"])
    web = group("Web", folders["Prod/Web"])
    refresh_membership()
    vm.refresh_from_db()
    assert vm.protection_group == web


def test_nothing_changes_and_nothing_is_audited_when_membership_is_current(folders):
    create_test_vm(folders["Prod"], "a")
    group("Prod", folders["Prod"])
    refresh_membership()
    count = AuditEntry.objects.count()
    assert refresh_membership() == {"joined": 0, "left": 0}
    assert AuditEntry.objects.count() == count
