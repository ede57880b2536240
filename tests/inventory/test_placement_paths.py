"""Placement targets named as vSphere names them: a sync of vcsim's default inventory (a cluster and a
standalone host, each with a root pool "Resources") stores govc's inventory paths and the networks, and
inventory.placement resolves paths, ids and unique names, and refuses an ambiguous name with the paths."""

from __future__ import annotations

import pytest

from inventory import placement
from inventory.models import Cluster, Datastore, Folder, Host, Network, ResourcePool, VirtualMachine
from tests.factories.protection import register_simulator
from tools.simulator import default_inventory_spec

pytestmark = pytest.mark.django_db


def start(vcsim_factory, *extra_clusters: str) -> VirtualMachine:
    spec = default_inventory_spec([{"name": "app-01", "disks_mb": [1], "nics": ["VM Network"]}], folder="Prod/a/b")
    spec["datacenters"][0]["clusters"] += [{"name": name, "hosts": 1} for name in extra_clusters]
    register_simulator(vcsim_factory(spec))
    return VirtualMachine.objects.get(name="app-01")


@pytest.fixture
def synced(vcsim_factory):
    return start(vcsim_factory)


def test_sync_stores_govc_paths_and_networks(synced):
    assert set(ResourcePool.objects.values_list("inventory_path", flat=True)) == {
        "DC0/host/DC0_C0/Resources",
        "DC0/host/DC0_H0/Resources",
    }
    assert Host.objects.get(name="DC0_H0").inventory_path == "DC0/host/DC0_H0/DC0_H0"
    assert Host.objects.filter(inventory_path__startswith="DC0/host/DC0_C0/").count() == 3
    assert Datastore.objects.get().inventory_path == "DC0/datastore/LocalDS_0"
    assert Folder.objects.get(path="DC0/Prod/a/b").inventory_path == "DC0/vm/Prod/a/b"
    assert Folder.objects.get(is_root=True).inventory_path == "DC0/vm"
    # The uplink port group of the switch is no network a VM can use.
    assert set(Network.objects.values_list("inventory_path", "kind")) == {
        ("DC0/network/VM Network", "Network"),
        ("DC0/network/DC0_DVPG0", "DistributedVirtualPortgroup"),
    }


def test_an_ambiguous_name_lists_the_candidates_paths(synced):
    pools = placement.candidates("pool", synced)
    with pytest.raises(placement.PlacementError) as refused:
        placement.resolve("pool", "Resources", pools)
    assert str(refused.value) == (
        "'Resources' names 2 resource pools: DC0/host/DC0_C0/Resources, DC0/host/DC0_H0/Resources; give the path."
    )
    assert placement.resolve("pool", "DC0/host/DC0_H0/Resources", pools).owner_moref.startswith("computeresource")
    assert placement.resolve("pool", "/DC0/host/DC0_C0/Resources", pools).inventory_path.endswith("DC0_C0/Resources")


def test_paths_ids_unique_names_and_escaped_slashes_resolve(vcsim_factory):
    synced = start(vcsim_factory, "Lab/2")  # a cluster whose name has a slash
    pools = placement.candidates("pool", synced)
    lab = Cluster.objects.get(name="Lab/2")
    assert lab.inventory_path == "DC0/host/Lab%2f2"
    assert placement.resolve("pool", "DC0/host/Lab%2f2/Resources", pools).owner_moref == lab.moref
    assert placement.resolve("cluster", "Lab/2", placement.candidates("cluster", synced)) == lab  # a plain name
    folders = placement.candidates("folder", synced)
    assert placement.resolve("folder", "b", folders).inventory_path == "DC0/vm/Prod/a/b"  # a unique name
    assert placement.resolve("folder", "DC0/Prod/a", folders).inventory_path == "DC0/vm/Prod/a"  # the short path
    network = placement.resolve("network", "DC0_DVPG0", placement.candidates("network", synced))
    assert placement.resolve("network", network.pk, placement.candidates("network", synced)) == network
    assert placement.resolve("datastore", str(Datastore.objects.get().pk), placement.candidates("datastore", synced))
    with pytest.raises(placement.PlacementError, match=r"There is no host 'DC0/host/nowhere' here\. Known hosts: "):
        placement.resolve("host", "DC0/host/nowhere", placement.candidates("host", synced))
