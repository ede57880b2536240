"""Snapshots for backups: the tree, the disks a snapshot captured, and quiesce failures (inventory.vcenter
against the simulator; no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inventory import vcenter
from inventory.vcenter.snapshots import is_quiesce_failure
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import simulator_for_module
from tools.simulator import Simulator

SPEC = one_datacenter(
    {
        "Apps": [
            {"name": "app-01", "disks_mb": [8, 4], "power_on": True},
            {"name": "db-quiesce-fails", "disks_mb": [4], "power_on": True},
            {"name": "mail-01", "annotation": "Exchange: quiesce-fails since KB123", "disks_mb": [4]},
            {"name": "lonely", "disks_mb": [4]},
        ]
    }
)


sim = simulator_for_module(SPEC)


def test_a_vm_without_snapshots_has_an_empty_list_and_the_connection_survives(
    sim: Simulator, conn: vcenter.Connection
) -> None:
    moref = sim.vm("lonely")["moref"]
    assert vcenter.list_snapshots(conn, moref) == []
    # an unset snapshot property read the wrong way makes vcsim drop the connection: still usable
    assert vcenter.list_snapshots(conn, moref) == []
    assert vcenter.about(conn).api_type == "VirtualCenter"


def test_the_snapshot_tree_is_flattened_parents_first(sim: Simulator, conn: vcenter.Connection) -> None:
    moref = sim.vm("app-01")["moref"]
    before = datetime.now(UTC) - timedelta(seconds=5)
    first = vcenter.create_snapshot(conn, moref, "nightly", "first one", quiesce=False)
    second = vcenter.create_snapshot(conn, moref, "weekly", "", quiesce=True)
    third = vcenter.create_snapshot(conn, moref, "before patch", "third", quiesce=False)

    snapshots = vcenter.list_snapshots(conn, moref)

    assert [(s.moref, s.name, s.parent_moref) for s in snapshots] == [
        (first, "nightly", None),
        (second, "weekly", first),
        (third, "before patch", second),
    ]
    assert [s.quiesced for s in snapshots] == [False, True, False]
    assert [s.current for s in snapshots] == [False, False, True]
    assert snapshots[0].description == "first one"
    assert all(s.created.tzinfo is not None and before <= s.created <= datetime.now(UTC) for s in snapshots)
    assert snapshots[0].power_state == "poweredOn"
    assert len({s.id for s in snapshots}) == 3

    # Removing the middle one hangs its child under its parent.
    vcenter.remove_snapshot(conn, second)
    assert [(s.moref, s.parent_moref) for s in vcenter.list_snapshots(conn, moref)] == [(first, None), (third, first)]
    for snapshot in (third, first):
        vcenter.remove_snapshot(conn, snapshot)
    assert vcenter.list_snapshots(conn, moref) == []


def test_snapshot_disks_are_the_disks_the_snapshot_captured(sim: Simulator, conn: vcenter.Connection) -> None:
    vm = sim.vm("app-01")
    snapshot = vcenter.create_snapshot(conn, vm["moref"], "backup", "", quiesce=False)
    try:
        disks = vcenter.snapshot_disks(conn, snapshot)
        # vcsim keeps the VM's backing under a snapshot; vSphere names the frozen base disk here
        assert [(d.key, d.file_name, d.capacity_bytes, d.backing) for d in disks] == [
            (disk["key"], disk["file_name"], disk["capacity_bytes"], "flat") for disk in vm["disks"]
        ]
        assert all(d.datastore_name == "ds1" and d.controller_key == 1000 for d in disks)
        assert vcenter.snapshot_change_ids(conn, snapshot) == {}  # change tracking is off
    finally:
        vcenter.remove_snapshot(conn, snapshot)


def test_unknown_vms_and_snapshots_are_not_found(conn: vcenter.Connection) -> None:
    with pytest.raises(vcenter.NotFound):
        vcenter.list_snapshots(conn, "vm-999999")
    with pytest.raises(vcenter.NotFound):
        vcenter.snapshot_disks(conn, "snapshot-999999")
    with pytest.raises(vcenter.NotFound):
        vcenter.snapshot_change_ids(conn, "snapshot-999999")


@pytest.mark.parametrize("vm_name", ["db-quiesce-fails", "mail-01"])
def test_a_guest_that_cannot_quiesce_raises_quiesce_failed(sim: Simulator, conn: vcenter.Connection, vm_name) -> None:
    moref = sim.vm(vm_name)["moref"]
    with pytest.raises(vcenter.QuiesceFailed, match="ApplicationQuiesceFault: An error occurred while quiescing"):
        vcenter.create_snapshot(conn, moref, "app-consistent", "", quiesce=True)
    assert vcenter.list_snapshots(conn, moref) == []

    # Crash-consistent still works: what a policy's fallback does.
    snapshot = vcenter.create_snapshot(conn, moref, "crash-consistent", "", quiesce=False)
    assert [s.moref for s in vcenter.list_snapshots(conn, moref)] == [snapshot]
    vcenter.remove_snapshot(conn, snapshot)


def test_quiesce_failed_is_a_vcenter_error_that_is_not_retryable() -> None:
    assert issubclass(vcenter.QuiesceFailed, vcenter.VCenterError)
    assert not vcenter.QuiesceFailed.retryable


@pytest.mark.parametrize(
    ("fault", "message", "quiesce_failure"),
    [
        ("ApplicationQuiesceFault", "", True),
        ("ToolsUnavailable", "VMware Tools is not running", True),
        ("SnapshotFault", "Cannot create a quiesced snapshot because the snapshot operation exceeded the time", True),
        ("SystemError", "msg.snapshot.error-QUIESCINGERROR", True),
        ("FileFault", "Insufficient disk space on datastore", False),
        ("InvalidState", "The operation is not allowed in the current state.", False),
    ],
)
def test_which_snapshot_faults_count_as_quiesce_failures(fault: str, message: str, quiesce_failure: bool) -> None:
    assert is_quiesce_failure(fault, message) is quiesce_failure
