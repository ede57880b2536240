"""The JSON API restores a VM into the targets its placement endpoint lists: ids from
GET /api/v1/vms/{id}/placement/ (or inventory paths) in the restore-vm request, the adapters mapped
with "networks"; the restored disk is byte-identical and the VM sits in the pool asked for."""

from __future__ import annotations

import pytest

from inventory.models import VirtualMachine
from tests.factories.people import token_client
from tests.factories.placement import CLUSTER_POOL, adapters, disk_sha256, pool_of, start_placement_lab, the_restore
from tests.factories.protection import padded_sha256

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return start_placement_lab(vcsim_factory, settings, tmp_path)


def by_path(targets: list[dict], path: str) -> int:
    [found] = [target["id"] for target in targets if target["path"] == path]
    return found


def test_the_api_restores_into_targets_its_placement_endpoint_lists(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks, admin
):
    sim, image = lab
    point = backed_up("lnx-01")
    api = token_client(admin)
    vm = VirtualMachine.objects.get(name="lnx-01")

    placement = api.get(f"/api/v1/vms/{vm.pk}/placement/").json()

    assert [pool["path"] for pool in placement["pools"]] == [CLUSTER_POOL, "DC0/host/DC0_H0/Resources"]
    [datastore] = placement["datastores"]
    assert datastore["path"] == "DC0/datastore/LocalDS_0" and 0 < datastore["free_bytes"] <= datastore["capacity_bytes"]
    assert {n["path"] for n in placement["networks"]} == {"DC0/network/VM Network", "DC0/network/DC0_DVPG0"}
    assert "DC0/host/DC0_H0/DC0_H0" in [host["path"] for host in placement["hosts"]]
    request = {
        "mode": "new",
        "name": "lnx-01 from the api",
        "folder": by_path(placement["folders"], "DC0/vm/Prod"),
        "pool": "Resources",
        "datastore": datastore["id"],
        "networks": {"VM Network": by_path(placement["networks"], "DC0/network/DC0_DVPG0")},
    }
    refused = api.post(f"/api/v1/points/{point.pk}/restore-vm/", request, content_type="application/json")
    assert refused.status_code == 400
    assert "'Resources' names 2 resource pools" in refused.json()["pool"][0]

    request["pool"] = by_path(placement["pools"], CLUSTER_POOL)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(f"/api/v1/points/{point.pk}/restore-vm/", request, content_type="application/json")
    assert started.status_code == 202, started.content
    run_worker()

    moref = the_restore().result["moref"]
    assert pool_of(sim, moref) == CLUSTER_POOL
    assert adapters(sim, moref) == [("DC0_DVPG0", True), ("DC0_DVPG0", True)]
    capacity = point.disks.get().capacity_bytes
    assert disk_sha256(sim, moref, 0, capacity) == padded_sha256(image, capacity)
