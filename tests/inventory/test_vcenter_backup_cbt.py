"""Changed Block Tracking: snapshot change ids and QueryChangedDiskAreas, against the simulator's
implementation (tools/vcsim/main.go); no database."""

from __future__ import annotations

import re

import pytest

from inventory import vcenter
from inventory.vcenter.snapshots import merged_areas
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import simulator_for_module
from tools.simulator import Simulator

KiB, MiB = 1024, 1024 * 1024
BLOCK = 64 * KiB
CAPACITY = 16 * MiB
SPEC = one_datacenter(
    {
        "": [
            {"name": "cbt-01", "disks_mb": [16, 4], "power_on": True},
            {"name": "cbt-02", "disks_mb": [16]},
            {"name": "no-cbt", "disks_mb": [4]},
        ]
    },
    cbt_max_areas=2,  # answers in parts, so query_changed_areas has to ask again
)
CHANGE_ID = re.compile(r"^([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}/\d+$")


sim = simulator_for_module(SPEC)


def blocks(offset: int, length: int) -> tuple[int, int]:
    """The 64 KiB-aligned area covering a write."""
    start = offset // BLOCK * BLOCK
    return start, -(-(offset + length) // BLOCK) * BLOCK - start


def test_changes_between_two_snapshots_are_exactly_the_written_blocks(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("cbt-01")["moref"]
    sim.write_disk_range("cbt-01", 0, 3 * MiB, b"before tracking")  # data, but no change to report
    vcenter.enable_change_tracking(conn, vm)
    assert vcenter.fetch_vms(conn, [vm])[0].cbt_enabled
    sim.write_disk_range("cbt-01", 0, 5 * MiB, b"before the first backup")

    first = vcenter.create_snapshot(conn, vm, "backup 1", "", quiesce=False)
    ids = vcenter.snapshot_change_ids(conn, first)
    assert set(ids) == {2000, 2001} and all(CHANGE_ID.match(i) for i in ids.values())

    writes = [(100, 10), (BLOCK * 5 - 3, 10), (10 * MiB, 200 * KiB)]  # inside one block, across two, several
    for offset, length in writes:
        sim.write_disk_range("cbt-01", 0, offset, b"\xa5" * length)
    second = vcenter.create_snapshot(conn, vm, "backup 2", "", quiesce=False)
    sim.write_disk_range("cbt-01", 0, 12 * MiB, b"after the second snapshot")  # not in backup 2

    trips = conn.round_trips
    changed = vcenter.query_changed_areas(conn, vm, second, 2000, ids[2000], CAPACITY)
    assert changed == [blocks(offset, length) for offset, length in writes]
    assert conn.round_trips - trips >= 2  # two areas per answer: asked again from where it ended

    assert vcenter.query_changed_areas(conn, vm, second, 2001, ids[2001], 4 * MiB) == []  # disk 2 untouched
    second_ids = vcenter.snapshot_change_ids(conn, second)
    assert second_ids[2000] != ids[2000] and second_ids[2000].split("/")[0] == ids[2000].split("/")[0]
    assert vcenter.query_changed_areas(conn, vm, second, 2000, second_ids[2000], CAPACITY) == []

    # "*": every block holding data, whenever it was written (the simulator reads the disk as it is now).
    everything = vcenter.query_changed_areas(conn, vm, second, 2000, "*", CAPACITY)
    written = [(3 * MiB, 15), (5 * MiB, 23), *writes, (12 * MiB, 25)]
    assert everything == sorted(blocks(offset, length) for offset, length in written)


def test_bad_and_stale_change_ids_mean_a_full_read(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("cbt-02")["moref"]
    vcenter.enable_change_tracking(conn, vm)
    first = vcenter.create_snapshot(conn, vm, "backup 1", "", quiesce=False)
    old_id = vcenter.snapshot_change_ids(conn, first)[2000]

    def query(snapshot: str, change_id: str) -> list[tuple[int, int]]:
        return vcenter.query_changed_areas(conn, vm, snapshot, 2000, change_id, CAPACITY)

    for bad in ("garbage", old_id.split("/")[0] + "/99", "52 aa bb cc dd ee ff 00-11 22 33 44 55 66 77 88/0"):
        with pytest.raises(vcenter.ChangeTrackingUnavailable, match="read the whole disk"):
            query(first, bad)

    # Switching tracking off and on again resets it: ids from before are stale.
    vcenter.enable_change_tracking(conn, vm, False)
    with pytest.raises(vcenter.ChangeTrackingUnavailable):
        query(first, old_id)
    vcenter.enable_change_tracking(conn, vm)
    second = vcenter.create_snapshot(conn, vm, "backup 2", "", quiesce=False)
    with pytest.raises(vcenter.ChangeTrackingUnavailable):
        query(second, old_id)
    new_id = vcenter.snapshot_change_ids(conn, second)[2000]
    assert new_id.split("/")[0] != old_id.split("/")[0]
    assert query(second, new_id) == []

    with pytest.raises(vcenter.VCenterError) as wrong_disk:
        vcenter.query_changed_areas(conn, vm, second, 2999, new_id, CAPACITY)
    assert not isinstance(wrong_disk.value, vcenter.ChangeTrackingUnavailable)  # the caller's mistake


def test_a_vm_without_tracking_has_no_change_ids(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("no-cbt")["moref"]
    snapshot = vcenter.create_snapshot(conn, vm, "backup", "", quiesce=False)
    assert vcenter.snapshot_change_ids(conn, snapshot) == {}
    with pytest.raises(vcenter.ChangeTrackingUnavailable):
        vcenter.query_changed_areas(conn, vm, snapshot, 2000, "*", 4 * MiB)


def test_write_disk_range_lays_the_disk_out_as_vsphere_does(sim: Simulator, conn: vcenter.Connection) -> None:
    disk = sim.vm("no-cbt")["disks"][0]
    sim.write_disk_range("no-cbt", 0, 4 * MiB - 3, b"end")
    assert sim.disk_file("no-cbt", 0).stat().st_size == disk["capacity_bytes"]
    descriptor = vcenter.read_vmdk_descriptor(conn, "DC", "ds1", disk["descriptor_path"])
    assert descriptor.is_flat and descriptor.extents[0].path == disk["flat_path"]
    assert vcenter.read_datastore_file(conn, "DC", "ds1", disk["flat_path"], 4 * MiB - 4, 10) == b"\0end"
    with pytest.raises(ValueError, match="do not fit"):
        sim.write_disk_range("no-cbt", 0, 4 * MiB - 2, b"end")


def test_merged_areas_are_sorted_joined_and_cut_at_the_capacity() -> None:
    areas = [(BLOCK * 4, BLOCK), (0, BLOCK), (BLOCK, BLOCK), (BLOCK * 3, BLOCK * 2), (MiB - BLOCK, 2 * BLOCK)]
    assert merged_areas(areas, MiB) == [(0, 2 * BLOCK), (3 * BLOCK, 2 * BLOCK), (MiB - BLOCK, BLOCK)]
