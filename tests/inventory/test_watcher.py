"""Live change detection against the simulator: changes made in vCenter show within 10 s, without a
manual sync, and the watcher survives a vCenter restart."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import pytest

from audit.models import AuditEntry
from inventory import vcenter as vsphere
from inventory.models import Folder, ResourcePool, VCenter, VirtualMachine
from inventory.watcher import VCenterWatcher, watch_all
from protection.models import ProtectionGroup
from tests.factories.simulator import SMALL_SPEC
from tests.waiting import wait_until
from tools.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = 10.0  # seconds: the promise made to administrators


def eventually(check: Callable[[], object], what: str, timeout: float = LIMIT) -> None:
    wait_until(check, timeout=timeout, interval=0.1, what=f"the {what} shows in the inventory")


def register(sim) -> VCenter:
    vc = VCenter(name="sim", host=sim.host, port=sim.port, protocol="http", username=sim.username, verify_tls=False)
    vc.password = sim.password
    vc.save()
    return vc


@pytest.fixture
def watch():
    """Start a watcher on a vCenter row; it has done its first full sync when this returns."""
    running: list[tuple[threading.Event, VCenterWatcher]] = []

    def start(vc: VCenter) -> VCenterWatcher:
        stop, synced = threading.Event(), threading.Event()
        watcher = VCenterWatcher(vc.pk, stop, on_sync=synced.set)
        watcher.start()
        running.append((stop, watcher))
        assert synced.wait(30), "first sync did not finish"
        watcher.synced = synced
        return watcher

    yield start
    for stop, watcher in running:
        stop.set()
        watcher.join(30)


def connect(sim) -> vsphere.Connection:
    return vsphere.connect(vsphere.Endpoint(sim.host, sim.port, protocol="http"), sim.username, sim.password)


def test_rename_move_and_delete_show_within_ten_seconds(vcsim, watch):
    vc = register(vcsim)
    watch(vc)
    web = VirtualMachine.objects.get(name="web-01")
    root_vm = VirtualMachine.objects.get(name="root-vm")
    finance = Folder.objects.get(path="DC-East/Finance")
    with connect(vcsim) as conn:
        vsphere.rename_vm(conn, web.moref, "web-01-new")
        eventually(lambda: VirtualMachine.objects.filter(pk=web.pk, name="web-01-new").exists(), "rename")
        vsphere.move_vm(conn, web.moref, finance.moref)
        eventually(lambda: VirtualMachine.objects.filter(pk=web.pk, folder=finance).exists(), "move")
        vsphere.destroy_vm(conn, root_vm.moref)
        eventually(lambda: VirtualMachine.objects.filter(pk=root_vm.pk, removed_at__isnull=False).exists(), "delete")
    assert VirtualMachine.objects.get(pk=web.pk).path == "DC-East/Finance/web-01-new"


def test_a_vm_created_in_a_protected_folder_joins_the_group_by_itself(vcsim, watch):
    vc = register(vcsim)
    watch(vc)
    web = Folder.objects.get(path="DC-East/Production/Web")
    group = ProtectionGroup.objects.create(name="Web servers")
    group.folders.add(Folder.objects.get(path="DC-East/Production"))
    pool = ResourcePool.objects.filter(vcenter=vc, datacenter=web.datacenter).first()
    with connect(vcsim) as conn:
        vsphere.create_vm(
            conn,
            vsphere.VmSpec(
                folder_moref=web.moref,
                name="web-new",
                resource_pool_moref=pool.moref,
                datastore_name="datastore1",
                disks_mb=[4],
            ),
        )
    eventually(lambda: VirtualMachine.objects.filter(name="web-new", protection_group=group).exists(), "auto-join")
    vm = VirtualMachine.objects.get(name="web-new")
    assert vm.disks.count() == 1
    audit = AuditEntry.objects.get(action="protection.vm_joined", target_id=str(vm.pk))
    assert audit.actor_name == "auto-detect" and audit.details["group"] == "Web servers"


def test_the_watcher_reconnects_after_vcenter_restarts(vcsim_factory, watch):
    spec = copy.deepcopy(SMALL_SPEC)
    for n, vm in enumerate(vm for dc in spec["datacenters"] for f in dc["folders"] for vm in f.get("vms", [])):
        vm["instance_uuid"] = f"50000000-0000-0000-0000-{n:012d}"
    port = free_port()
    sim = vcsim_factory(spec, port=port)
    vc = register(sim)
    watcher = watch(vc)
    web = VirtualMachine.objects.get(name="web-01")
    sim.stop()
    watcher.synced.clear()
    restarted = vcsim_factory(spec, port=port, username=sim.username, password=sim.password)
    assert watcher.synced.wait(30), "no full sync after the restart"
    with connect(restarted) as conn:
        moref = vsphere.list_vms(conn, with_disks=False)
        moref = next(v.moref for v in moref if v.instance_uuid == web.instance_uuid)
        vsphere.rename_vm(conn, moref, "web-01-after-restart")
    eventually(lambda: VirtualMachine.objects.filter(pk=web.pk, name="web-01-after-restart").exists(), "rename")
    assert VirtualMachine.objects.filter(removed_at__isnull=True).count() == len(restarted.vms())


def test_a_vcenter_added_while_the_watchers_run_is_watched_at_once(vcsim):
    stop = threading.Event()
    watchers = threading.Thread(target=watch_all, args=(stop,), daemon=True)
    watchers.start()
    try:
        vc = register(vcsim)  # as the vCenters page adds one, with the watchers already running
        eventually(lambda: VirtualMachine.objects.filter(vcenter=vc, name="web-01").exists(), "first sync")
        web = VirtualMachine.objects.get(vcenter=vc, name="web-01")
        with connect(vcsim) as conn:
            vsphere.rename_vm(conn, web.moref, "web-01-renamed")
        eventually(lambda: VirtualMachine.objects.filter(pk=web.pk, name="web-01-renamed").exists(), "rename")
    finally:
        stop.set()
        watchers.join(30)
