"""The restore form's network adapters: beside the original (it still exists) each adapter defaults
to disconnected; once the original is gone, to the network of the captured name; a mapping from the
API or the command line that names no adapter is an error, not ignored."""

from __future__ import annotations

import pytest
from django.utils import timezone

from inventory.models import Network
from recovery.forms import RestoreVmForm
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db

NICS = [{"key": 4000, "label": "Network adapter 1", "network": "Prod LAN"}]


@pytest.fixture
def point():
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "web-01")
    Network.objects.create(vcenter=vm.vcenter, datacenter=vm.datacenter, moref="network-1", name="Prod LAN")
    now = timezone.now()
    return RecoveryPoint.objects.create(vm=vm, created=now, completed=now, config={"nics": NICS})


def test_beside_the_original_adapters_default_to_disconnected(point):
    form = RestoreVmForm(point=point)
    assert form.beside_original
    assert form.fields["nic_4000"].initial is None
    assert form.fields["nic_4000"].label == "Network adapter 1, device 4000 (was on Prod LAN)"


def test_without_the_original_adapters_default_to_the_network_of_the_same_name(point):
    point.vm.removed_at = timezone.now()
    point.vm.save()
    form = RestoreVmForm(point=point)
    assert not form.beside_original
    assert form.fields["nic_4000"].initial == Network.objects.get(name="Prod LAN").pk


def test_a_mapping_that_names_no_adapter_is_an_error(point):
    form = RestoreVmForm({"mode": "new", "networks": {"Dev LAN": None}}, point=point)
    assert not form.is_valid()
    assert "'Dev LAN' is neither a network nor an adapter of the VM at this point" in " ".join(form.non_field_errors())
