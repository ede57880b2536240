"""Inventory owns how its paths are written for vCenter's APIs (backups and restores both use them)."""

from __future__ import annotations

import pytest

from inventory.models import Datacenter, VirtualMachine
from inventory.paths import datacenter_path
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


def test_a_datacenter_path_is_escaped_as_vcenter_stores_names():
    folders = create_test_tree(create_test_vcenter(), ["Prod"], dc_name="DC 1/East%")
    vm = create_test_vm(folders["Prod"], "web-01")
    assert datacenter_path(vm) == "DC 1%2fEast%25"


def test_a_vm_without_a_datacenter_has_an_empty_path():
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "web-01")
    VirtualMachine.objects.filter(pk=vm.pk).update(datacenter=None)
    vm.refresh_from_db()
    assert datacenter_path(vm) == ""
    assert Datacenter.objects.count() == 1
