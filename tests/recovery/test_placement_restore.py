"""Restores placed by inventory path on vcsim's default inventory (the cluster DC0_C0 and the standalone
host DC0_H0 each have a root pool "Resources"): the command line and the page restore a VM
byte-identical into the pool they name; each network adapter lands on the network chosen for it, or
disconnected (the default beside the original, with a warning); the command's single-disk mode."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inventory.models import Datastore, Folder, Network, ResourcePool, VirtualDisk
from tests.factories.placement import (
    CLUSTER_POOL,
    NEW_VM_PLACE,
    STANDALONE_POOL,
    adapters,
    disk_sha256,
    pool_of,
    start_placement_lab,
    the_restore,
)
from tests.factories.protection import padded_sha256

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return start_placement_lab(vcsim_factory, settings, tmp_path)


def test_restore_vm_command_places_by_path_and_maps_the_adapters(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks
):
    sim, image = lab
    point = backed_up("lnx-01")
    first, second = sorted(nic["key"] for nic in point.config["nics"])
    with pytest.raises(CommandError) as refused:
        call_command("restore-vm", "lnx-01", "--name", "x", *NEW_VM_PLACE, "--pool", "Resources", stdout=io.StringIO())
    assert (
        "'Resources' names 2 resource pools: DC0/host/DC0_C0/Resources, DC0/host/DC0_H0/Resources; give the path."
        in str(refused.value)
    )

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "restore-vm",
            "lnx-01",
            "--name",
            "lnx-01 copy",
            *NEW_VM_PLACE,
            "--pool",
            CLUSTER_POOL,
            "--network",
            f"{first}=DC0/network/DC0_DVPG0",
            stdout=out,
        )
    run_worker()

    run = the_restore()
    assert "Warning: lnx-01 still exists" in out.getvalue()
    assert run.params["target"]["nics"] == {
        str(first): Network.objects.get(name="DC0_DVPG0").pk,
        str(second): None,  # not named: disconnected, the original still exists
    }
    moref = run.result["moref"]
    assert adapters(sim, moref) == [("DC0_DVPG0", True), ("VM Network", False)]
    assert pool_of(sim, moref) == CLUSTER_POOL
    capacity = point.disks.get().capacity_bytes
    assert disk_sha256(sim, moref, 0, capacity) == padded_sha256(image, capacity)
    warnings = [line["msg"] for line in run.log if line["level"] == "warning"]
    assert any("lnx-01 still exists" in message and "one identity" in message for message in warnings)


def test_the_page_shows_paths_and_restores_into_the_standalone_hosts_pool(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks, as_admin
):
    sim, image = lab
    point = backed_up("lnx-01")
    url = f"/recovery/points/{point.pk}/restore-vm/"
    page = as_admin.get(url).content.decode()
    assert CLUSTER_POOL in page and STANDALONE_POOL in page
    assert "DC0/datastore/LocalDS_0 (" in page and "GiB free of" in page
    assert 'id="beside-original-warning"' in page and "left disconnected" in page
    pool = ResourcePool.objects.get(inventory_path=STANDALONE_POOL)
    first, second = sorted(nic["key"] for nic in point.config["nics"])
    vm_network = Network.objects.get(name="VM Network")
    form = {
        "mode": "new",
        "name": "lnx-01 standalone",
        "folder": Folder.objects.get(inventory_path="DC0/vm/Prod").pk,
        "pool": pool.pk,
        "datastore": Datastore.objects.get().pk,
        f"nic_{first}": "",
        f"nic_{second}": vm_network.pk,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = as_admin.post(url, form)
    assert response.status_code == 302
    run_worker()

    moref = the_restore().result["moref"]
    assert pool_of(sim, moref) == STANDALONE_POOL
    assert adapters(sim, moref) == [("VM Network", False), ("VM Network", True)]
    capacity = point.disks.get().capacity_bytes
    assert disk_sha256(sim, moref, 0, capacity) == padded_sha256(image, capacity)


def test_restore_vm_command_restores_one_disk_into_another_vm(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks, monkeypatch
):
    sim, image = lab
    point = backed_up("lnx-01")
    target = VirtualDisk.objects.get(vm__name="spare-01")
    monkeypatch.setattr("builtins.input", lambda _prompt: "lnx-01")
    with pytest.raises(CommandError, match="Not confirmed; nothing was changed."):
        call_command("restore-vm", "lnx-01", "--disk", "1", "--to-vm", "spare-01", "--to-disk", "1")
    with pytest.raises(CommandError, match="has no disk 7"):
        call_command("restore-vm", "lnx-01", "--disk", "1", "--to-vm", "spare-01", "--to-disk", "7", "--yes")

    monkeypatch.setattr("builtins.input", lambda _prompt: "spare-01")
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "restore-vm",
            "lnx-01",
            "--disk",
            "1",
            "--to-vm",
            "spare-01",
            "--to-disk",
            str(target.key),
            stdout=io.StringIO(),
        )
    run_worker()

    run = the_restore()
    assert run.params["target"] == {
        "mode": "disk",
        "source_disk": point.disks.get().key,
        "vm_id": target.vm_id,
        "disk_key": target.key,
    }
    assert disk_sha256(sim, target.vm.moref, 0, target.capacity_bytes) == padded_sha256(image, target.capacity_bytes)
