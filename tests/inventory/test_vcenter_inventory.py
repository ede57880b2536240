"""Bulk inventory reads and inventory changes of inventory.vcenter against the simulator; no database."""

from __future__ import annotations

from collections import Counter

import pytest

from inventory import vcenter
from tests.factories.simulator import NON_LATIN_NAME, SCRIPT_NAME, SMALL_SPEC
from tests.fixtures.vcsim import connect_to
from tools.bench_specs import bulk_spec, bulk_vm_count
from tools.simulator import Simulator

MiB = 1024 * 1024
VCENTER_UUID = "5a1b2c3d-0000-4000-8000-00000000c0de"
SPEC = {**SMALL_SPEC, "instance_uuid": VCENTER_UUID}


@pytest.fixture
def sim(vcsim_factory) -> Simulator:
    return vcsim_factory(SPEC)


def test_inventory_matches_the_spec(sim: Simulator, conn: vcenter.Connection) -> None:
    inv = vcenter.fetch_inventory(conn)

    assert inv.about.instance_uuid == VCENTER_UUID and inv.about.api_type == "VirtualCenter"
    dcs = {dc.name: dc for dc in inv.datacenters}
    assert set(dcs) == {"DC-East", "DC-West"}
    assert {dc.moref for dc in inv.datacenters} == {dc["moref"] for dc in sim.manifest["datacenters"]}

    # The VM folder tree, by path, with parents and each datacenter's root folder.
    folders = {f.moref: f for f in inv.folders}
    assert all(f.is_vm_folder for f in inv.folders)

    def path(f: vcenter.FolderInfo) -> str:
        return "" if f.parent_moref is None else f"{path(folders[f.parent_moref])}/{f.name}".lstrip("/")

    by_dc = {(f.datacenter_moref, path(f)) for f in inv.folders}
    east, west = dcs["DC-East"].moref, dcs["DC-West"].moref
    assert by_dc == {
        (east, ""),
        (east, "Production"),
        (east, "Production/Web"),
        (east, "Finance"),
        (west, ""),
        (west, "Lab"),
    }
    roots = [f for f in inv.folders if f.is_root]
    assert {f.moref for f in roots} == {dc.vm_folder_moref for dc in inv.datacenters}
    assert all(f.parent_moref is None for f in roots)

    # VMs per folder, with the datacenter worked out from the parents.
    per_folder = Counter((vm.datacenter_moref, path(folders[vm.folder_moref])) for vm in inv.vms)
    assert per_folder == {(east, "Production/Web"): 2, (east, "Finance"): 1, (east, ""): 1, (west, "Lab"): 3}
    assert {vm.name for vm in inv.vms} >= {SCRIPT_NAME, NON_LATIN_NAME, "root-vm", "lab-0003"}

    # Clusters, hosts, pools, datastores.
    clusters = {c.name: c for c in inv.clusters}
    assert {(name, c.datacenter_moref) for name, c in clusters.items()} == {("Cluster-A", east), ("Cluster-B", west)}
    assert Counter(h.cluster_moref for h in inv.hosts) == {
        clusters["Cluster-A"].moref: 2,
        clusters["Cluster-B"].moref: 1,
    }
    assert all(h.connection_state == "connected" for h in inv.hosts)
    assert {(p.owner_moref, p.parent_moref) for p in inv.resource_pools} == {
        (clusters["Cluster-A"].moref, None),
        (clusters["Cluster-B"].moref, None),
    }
    datastores = {ds.name: ds for ds in inv.datastores}
    assert {(n, ds.datacenter_moref) for n, ds in datastores.items()} == {("datastore1", east), ("west-ds", west)}
    assert all(ds.capacity_bytes >= ds.free_bytes > 0 and ds.url for ds in inv.datastores)


def test_vm_fields_and_disks(sim: Simulator, conn: vcenter.Connection) -> None:
    inv = vcenter.fetch_inventory(conn)
    vms = {vm.moref: vm for vm in inv.vms}
    hosts = {h.moref for h in inv.hosts}
    pools = {p.moref for p in inv.resource_pools}
    for expected in sim.vms():
        vm = vms[expected["moref"]]
        assert (vm.name, vm.instance_uuid, vm.power_state) == (
            expected["name"],
            expected["instance_uuid"],
            expected["power_state"],
        )
        assert vm.host_moref == expected["host"] and vm.host_moref in hosts and vm.resource_pool_moref in pools
        assert [(d.key, d.capacity_bytes, d.file_name, d.path) for d in vm.disks] == [
            (d["key"], d["capacity_bytes"], d["file_name"], d["descriptor_path"]) for d in expected["disks"]
        ]
    web = next(vm for vm in inv.vms if vm.name == "web-01")
    assert (web.guest_id, web.num_cpu, web.memory_mb, web.is_template) == ("windows9Server64Guest", 2, 4096, False)
    assert (web.snapshot_count, web.cbt_enabled, web.datacenter, web.folder_path) == (
        0,
        False,
        "DC-East",
        "Production/Web",
    )
    assert web.bios_uuid and web.change_version
    datastore1 = next(ds for ds in inv.datastores if ds.name == "datastore1")
    first, second = web.disks
    assert (first.label, first.capacity_bytes, first.datastore_name, first.datastore_moref) == (
        "Hard disk 1",
        64 * MiB,
        "datastore1",
        datastore1.moref,
    )
    assert (first.backing, first.thin, first.disk_mode, first.controller_key) == ("flat", True, "persistent", 1000)
    assert (first.unit_number, second.unit_number, second.path) == (0, 1, "web-01/web-01_1.vmdk")
    assert next(vm for vm in inv.vms if vm.name == "root-vm").disks == ()


def test_round_trips_do_not_grow_with_the_number_of_vms(vcsim_factory) -> None:
    small, large = bulk_spec(folders=1, vms_per_folder=5), bulk_spec(folders=3, vms_per_folder=100)
    trips = {}
    for spec in (small, large):
        with connect_to(vcsim_factory(spec)) as conn:
            inv = vcenter.fetch_inventory(conn, page_size=1000)
            assert len(inv.vms) == bulk_vm_count(spec)
            trips[len(inv.vms)] = inv.round_trips
    # CreateContainerView, one RetrievePropertiesEx page, DestroyView.
    assert trips == {5: 3, 300: 3}


def test_small_pages_read_the_same_inventory(conn: vcenter.Connection) -> None:
    whole, paged = vcenter.fetch_inventory(conn), vcenter.fetch_inventory(conn, page_size=2)

    assert paged.round_trips > whole.round_trips
    for field in ("datacenters", "folders", "clusters", "hosts", "resource_pools", "datastores", "vms"):
        key = lambda item: item.moref  # noqa: E731
        assert sorted(getattr(paged, field), key=key) == sorted(getattr(whole, field), key=key), field
    assert sorted(vcenter.list_vms(conn), key=lambda vm: vm.moref) == sorted(whole.vms, key=lambda vm: vm.moref)


def test_fetch_vms_and_folders_reread_cheaply(conn: vcenter.Connection) -> None:
    inv = vcenter.fetch_inventory(conn)
    chosen = [vm for vm in inv.vms if vm.name in ("web-01", "lab-0002")]
    vcenter.destroy_vm(conn, chosen[0].moref)

    before = conn.round_trips
    again = vcenter.fetch_vms(conn, [vm.moref for vm in chosen] + ["vm-424242"])
    assert conn.round_trips - before == 1
    assert again == chosen[1:]  # the destroyed one and the unknown one are absent

    before = conn.round_trips
    assert vcenter.fetch_folders(conn) == inv.folders
    assert conn.round_trips - before == 3
    assert vcenter.fetch_vms(conn, []) == []


def test_snapshots_count_the_whole_tree_and_none_reads_as_zero(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("web-01")["moref"]
    first = vcenter.create_snapshot(conn, vm, "one", "", quiesce=False)
    second = vcenter.create_snapshot(conn, vm, "two", "", quiesce=False)  # a child of the first
    assert vcenter.fetch_vms(conn, [vm])[0].snapshot_count == 2

    vcenter.remove_snapshot(conn, second)
    assert vcenter.fetch_vms(conn, [vm])[0].snapshot_count == 1
    vcenter.remove_snapshot(conn, first)
    assert vcenter.fetch_vms(conn, [vm])[0].snapshot_count == 0  # the property is unset now


def test_change_tracking_and_change_version(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("web-01")["moref"]
    before = vcenter.fetch_vms(conn, [vm])[0]

    vcenter.enable_change_tracking(conn, vm)
    after = vcenter.fetch_vms(conn, [vm])[0]

    assert (before.cbt_enabled, after.cbt_enabled) == (False, True)
    assert after.change_version and after.change_version > before.change_version


def test_create_move_rename_and_destroy(sim: Simulator, conn: vcenter.Connection) -> None:
    inv = vcenter.fetch_inventory(conn)
    east = next(dc for dc in inv.datacenters if dc.name == "DC-East")
    pool = next(p for p in inv.resource_pools if p.datacenter_moref == east.moref)
    odd = "Tier 1/2 \\ 100%"
    folder = vcenter.create_folder(conn, east.vm_folder_moref, odd)
    uuid = "502e71fa-1b2c-4d3e-8f90-00000000abcd"

    vm = vcenter.create_vm(
        conn,
        vcenter.VmSpec(
            folder_moref=folder,
            name=f"{odd} vm",
            resource_pool_moref=pool.moref,
            datastore_name="datastore1",
            disks_mb=[4, 2],
            guest_id="otherLinux64Guest",
            num_cpu=2,
            memory_mb=512,
            instance_uuid=uuid,
        ),
    )

    created = vcenter.fetch_vms(conn, [vm])[0]
    assert (created.name, created.folder_moref, created.instance_uuid, created.power_state) == (
        f"{odd} vm",
        folder,
        uuid,
        "poweredOff",
    )
    assert (created.guest_id, created.num_cpu, created.memory_mb) == ("otherLinux64Guest", 2, 512)
    assert [(d.capacity_bytes, d.datastore_name, d.unit_number, d.thin) for d in created.disks] == [
        (4 * MiB, "datastore1", 0, True),
        (2 * MiB, "datastore1", 1, True),
    ]
    assert created.folder_path == "Tier 1%2f2 %5c 100%25"  # vCenter's escaped form, as dcPath needs
    assert next(f for f in vcenter.fetch_folders(conn) if f.moref == folder).name == odd

    web = sim.vm("web-01")["moref"]  # powered on: destroy_vm powers it off first
    vcenter.move_vm(conn, web, folder)
    vcenter.rename_vm(conn, web, "web/01")
    moved = vcenter.fetch_vms(conn, [web])[0]
    assert (moved.name, moved.folder_moref) == ("web/01", folder)
    vcenter.destroy_vm(conn, web)
    vcenter.destroy_vm(conn, vm)
    assert vcenter.fetch_vms(conn, [web, vm]) == []
    with pytest.raises(vcenter.VCenterError):
        vcenter.destroy_vm(conn, vm)
