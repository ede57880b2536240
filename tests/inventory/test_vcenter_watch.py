"""inventory.vcenter.ChangeWatcher against the simulator: what an administrator does in vCenter
shows within seconds, and a vCenter going away is noticed; no database."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from inventory import vcenter
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import connect_to
from tests.waiting import wait_until
from tools.simulator import Simulator

VCENTER_UUID = "5a1b2c3d-0000-4000-8000-0000000000aa"
SPEC = one_datacenter(
    {
        "Apps": [
            {
                "name": "app-1",
                "disks_mb": [2],
                "power_on": True,
                "instance_uuid": "50000000-0000-4000-8000-000000000001",
            },
            {"name": "app-2", "disks_mb": [2], "instance_uuid": "50000000-0000-4000-8000-000000000002"},
        ],
        "Archive": [{"name": "old-1", "instance_uuid": "50000000-0000-4000-8000-000000000003"}],
    },
    hosts=2,
    instance_uuid=VCENTER_UUID,
)
SOON = 10.0  # seconds: vcsim batches changes every 250 ms


@pytest.fixture
def sim(vcsim_factory) -> Simulator:
    return vcsim_factory(SPEC)


@pytest.fixture
def admin(sim: Simulator) -> Iterator[vcenter.Connection]:
    """A second session, as the vCenter administrator making changes."""
    with connect_to(sim) as c:
        yield c


@pytest.fixture
def watcher(sim: Simulator) -> Iterator[vcenter.ChangeWatcher]:
    with connect_to(sim) as conn, vcenter.ChangeWatcher(conn, skip_initial=True) as w:
        yield w


def seen(watcher: vcenter.ChangeWatcher, done: Callable[[vcenter.ChangeSet], bool]) -> vcenter.ChangeSet:
    """The first change set for which done() holds, within SOON seconds (earlier sets are skipped)."""
    deadline = time.monotonic() + SOON
    while (remaining := deadline - time.monotonic()) > 0:
        changes = watcher.wait(remaining)
        if changes is not None and done(changes):
            return changes
    raise AssertionError(f"not seen within {SOON} s")


def waiting_for_the_server(thread: threading.Thread) -> bool:
    """Whether `thread` has sent WaitForUpdatesEx and is blocked on the answer: pyVmomi calls
    http.client's getresponse() once the request is written, so both are on its stack."""
    frame = sys._current_frames().get(thread.ident)  # the stdlib's way to look at another thread
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return {"_wait_once", "getresponse"} <= names


def test_the_first_wait_reports_everything(sim: Simulator) -> None:
    with connect_to(sim) as conn, vcenter.ChangeWatcher(conn) as watcher:
        initial = watcher.wait(5)
        assert initial is not None
        assert initial.vms_changed == {vm["moref"] for vm in sim.vms()} and initial.folders_changed
        assert not initial.vms_removed
        assert watcher.wait(0.5) is None  # nothing happened since


def test_rename_move_destroy_and_create_show_within_seconds(
    sim: Simulator, admin: vcenter.Connection, watcher: vcenter.ChangeWatcher
) -> None:
    app1, app2 = sim.vm("app-1")["moref"], sim.vm("app-2")["moref"]
    archive = next(f for f in vcenter.fetch_folders(admin) if f.name == "Archive")

    vcenter.rename_vm(admin, app1, "app-1-renamed")
    assert app1 in seen(watcher, lambda c: app1 in c.vms_changed).vms_changed

    vcenter.move_vm(admin, app2, archive.moref)
    seen(watcher, lambda c: app2 in c.vms_changed)
    assert vcenter.fetch_vms(admin, [app2])[0].folder_moref == archive.moref

    vcenter.destroy_vm(admin, app1)  # powered on: switched off first
    changes = seen(watcher, lambda c: app1 in c.vms_removed)
    assert app1 not in changes.vms_changed

    inv = vcenter.fetch_inventory(admin)
    new = vcenter.create_vm(
        admin,
        vcenter.VmSpec(
            folder_moref=archive.moref,
            name="new-1",
            resource_pool_moref=inv.resource_pools[0].moref,
            datastore_name="ds1",
            disks_mb=[1],
        ),
    )
    seen(watcher, lambda c: new in c.vms_changed)


def test_folder_changes_and_disk_changes_show(sim: Simulator, admin: vcenter.Connection, watcher) -> None:
    root = next(f for f in vcenter.fetch_folders(admin) if f.is_root)
    vcenter.create_folder(admin, root.moref, "New folder")
    seen(watcher, lambda c: c.folders_changed)

    # A snapshot changes the VM's configuration (its disks point at delta files on vSphere):
    # config.changeVersion changes, and the VM is reported.
    app2 = sim.vm("app-2")["moref"]
    vcenter.create_snapshot(admin, app2, "backup", "", quiesce=False)
    seen(watcher, lambda c: app2 in c.vms_changed)


def test_cancel_ends_a_pending_wait_at_once(watcher: vcenter.ChangeWatcher) -> None:
    outcome: list[object] = []
    waiting = threading.Thread(target=lambda: outcome.append(watcher.wait(30)))
    waiting.start()
    wait_until(lambda: waiting_for_the_server(waiting), what="WaitForUpdatesEx is sent and awaits its answer")
    started = time.monotonic()
    watcher.cancel()
    waiting.join(SOON)

    assert not waiting.is_alive() and time.monotonic() - started < 3
    assert outcome == [None]
    assert watcher.wait(0.5) is None  # and the watcher still works


def test_a_stopped_vcenter_is_unreachable_at_once_and_a_restarted_one_reconnects(sim: Simulator) -> None:
    conn = connect_to(sim)
    watcher = vcenter.ChangeWatcher(conn, skip_initial=True)
    outcome: list[BaseException | object] = []

    def wait() -> None:
        try:
            outcome.append(watcher.wait(30))
        except BaseException as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=wait)
    waiting.start()
    wait_until(lambda: waiting_for_the_server(waiting), what="WaitForUpdatesEx is sent and awaits its answer")
    started = time.monotonic()
    port, uuids = sim.port, {vm["name"]: vm["instance_uuid"] for vm in sim.vms()}
    sim.stop()
    waiting.join(SOON)

    assert not waiting.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], vcenter.Unreachable), outcome
    with pytest.raises(vcenter.Unreachable):  # and so is every later call
        watcher.wait(1)
    with pytest.raises(vcenter.Unreachable):
        vcenter.fetch_inventory(conn)

    sim.restart()  # the same port, the same spec: VM instance UUIDs are fixed there
    assert sim.port == port
    with pytest.raises(vcenter.Unreachable):  # the old session is gone with the old process
        vcenter.fetch_inventory(conn)
    watcher.close()
    conn.close()
    with connect_to(sim) as again, vcenter.ChangeWatcher(again, skip_initial=True) as rewatch:
        inv = vcenter.fetch_inventory(again)
        assert inv.about.instance_uuid == VCENTER_UUID
        assert {vm.name: vm.instance_uuid for vm in inv.vms} == uuids
        vcenter.rename_vm(again, inv.vms[0].moref, "after-restart")
        seen(rewatch, lambda c: inv.vms[0].moref in c.vms_changed)
