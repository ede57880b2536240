"""Shared setup for backup tests: a simulator registered over pinned TLS, synced, its "DC/Prod" protected."""

from __future__ import annotations

from inventory import vcenter as vsphere
from inventory.models import Folder, VCenter
from inventory.sync import apply_inventory
from protection import actions
from protection.models import ProtectionGroup
from tests.protection.test_groups import POLICY


def prod_spec(*vms: dict) -> dict:
    """A simulator spec of one datacenter "DC" (a cluster, a host, datastore "ds1") with these VMs in
    the folder "Prod", the one `protect_simulator` protects."""
    return {
        "datacenters": [
            {
                "name": "DC",
                "clusters": [{"name": "C", "hosts": 1}],
                "datastores": [{"name": "ds1"}],
                "folders": [{"path": "Prod", "vms": list(vms)}],
            }
        ]
    }


def protect_simulator(sim, *, group_name: str = "Prod", **policy) -> tuple[VCenter, ProtectionGroup]:
    vc = VCenter(name="lab", host=sim.host, port=sim.port, username=sim.username, thumbprint=sim.thumbprint)
    vc.password = sim.password
    vc.save()
    with vsphere.connect(sim.host, sim.port, sim.username, sim.password, thumbprint=sim.thumbprint) as conn:
        apply_inventory(vc, vsphere.fetch_inventory(conn))
    group = actions.save_group(
        None,
        group=None,
        name=group_name,
        description="",
        selection=actions.Selection(folder_ids=[Folder.objects.get(path="DC/Prod").pk]),
        policy_values={**POLICY, **policy},
    )
    return vc, group


def protect_vms(name: str, vms: list, policy: dict | None = None) -> ProtectionGroup:
    """A protection group of these VMs (one by one, no folders), with POLICY unless given; the VM
    objects are refreshed so `vm.protection_group` is set."""
    group = actions.save_group(
        None,
        group=None,
        name=name,
        description="",
        selection=actions.Selection(vm_ids=[vm.pk for vm in vms]),
        policy_values=policy or POLICY,
    )
    for vm in vms:
        vm.refresh_from_db()
    return group
