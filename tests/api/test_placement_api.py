"""GET /api/v1/vms/{id}/placement/: the restore targets of a VM's datacenter with ids and paths, for
those who may restore VMs (administrators); helpdesk and auditors are refused, unknown VMs are 404."""

from __future__ import annotations

import pytest

from inventory.models import Datastore, Network, ResourcePool

pytestmark = pytest.mark.django_db


def test_an_administrator_gets_the_targets_of_the_vms_datacenter(api_admin, inventory):
    vm = inventory["vms"]["web-01"]
    Datastore.objects.create(
        vcenter=vm.vcenter, datacenter=vm.datacenter, moref="ds-9", name="ds9", capacity_bytes=2**40, free_bytes=2**39
    )
    ResourcePool.objects.create(
        vcenter=vm.vcenter,
        datacenter=vm.datacenter,
        moref="resgroup-9",
        name="Resources",
        inventory_path="DC1/host/C1/Resources",
    )
    Network.objects.create(
        vcenter=vm.vcenter,
        datacenter=vm.datacenter,
        moref="dvportgroup-9",
        name="Prod/1",
        kind="DistributedVirtualPortgroup",
    )

    body = api_admin.get(f"/api/v1/vms/{vm.pk}/placement/").json()

    assert body["vm"] == {"id": vm.pk, "name": "web-01"}
    assert {"id", "name", "path"} <= set(body["folders"][0])
    assert [pool["path"] for pool in body["pools"]] == ["DC1/host/C1/Resources"]
    [datastore] = [d for d in body["datastores"] if d["name"] == "ds9"]
    assert datastore["free_bytes"] == 2**39 and datastore["capacity_bytes"] == 2**40
    # Before the next sync fills the path in, a target is shown by its name.
    assert [(n["path"], n["kind"]) for n in body["networks"]] == [("Prod/1", "DistributedVirtualPortgroup")]


def test_helpdesk_and_auditors_are_refused_and_unknown_vms_are_404(api_helpdesk, api_auditor, api_admin, inventory):
    vm = inventory["vms"]["web-01"]
    assert api_helpdesk.get(f"/api/v1/vms/{vm.pk}/placement/").status_code == 403
    assert api_auditor.get(f"/api/v1/vms/{vm.pk}/placement/").status_code == 403
    assert api_admin.get("/api/v1/vms/999999/placement/").status_code == 404
    assert api_admin.get(f"/api/v1/vms/{2**70}/placement/").status_code == 404
