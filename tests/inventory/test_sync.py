"""Full sync against the simulator: the database matches vcsim exactly, identities hold, a failed
sync changes nothing, several vCenters live side by side."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory import sync
from inventory import vcenter as vsphere
from inventory.models import Datacenter, Folder, VCenter, VirtualDisk, VirtualMachine
from inventory.sync import apply_inventory
from tests.factories.simulator import NON_LATIN_NAME, SCRIPT_NAME, SMALL_SPEC
from tools.bench_specs import bulk_spec

pytestmark = pytest.mark.django_db


def register(sim, name: str = "sim") -> VCenter:
    vc = VCenter(name=name, host=sim.host, port=sim.port, protocol="http", username=sim.username, verify_tls=False)
    vc.password = sim.password
    vc.save()
    return vc


def full_sync(vc: VCenter, sim) -> None:
    with vsphere.connect(vsphere.Endpoint(sim.host, sim.port, protocol="http"), sim.username, sim.password) as conn:
        apply_inventory(vc, vsphere.fetch_inventory(conn))


def spec_counts(spec) -> Counter:
    """VMs per folder path ("DC/Folder/Sub"), from the spec."""
    counts: Counter = Counter()
    for dc in spec["datacenters"]:
        for folder in dc["folders"]:
            path = "/".join(p for p in (dc["name"], folder["path"]) if p)
            counts[path] += len(folder.get("vms", [])) + folder.get("generate", {}).get("count", 0)
    return counts


def test_after_a_sync_datacenters_folders_and_vms_match_the_simulator(vcsim):
    vc = register(vcsim)
    full_sync(vc, vcsim)
    assert set(Datacenter.objects.values_list("name", flat=True)) == {"DC-East", "DC-West"}
    db_counts = Counter(VirtualMachine.objects.filter(removed_at__isnull=True).values_list("folder__path", flat=True))
    assert db_counts == spec_counts(SMALL_SPEC)
    folder_paths = set(Folder.objects.values_list("path", flat=True))
    assert {"DC-East", "DC-East/Production", "DC-East/Production/Web", "DC-East/Finance", "DC-West/Lab"} <= folder_paths
    for expected in vcsim.vms():
        vm = VirtualMachine.objects.get(vcenter=vc, instance_uuid=expected["instance_uuid"])
        assert vm.name == expected["name"] and vm.moref == expected["moref"]
        assert list(vm.disks.values_list("key", "capacity_bytes")) == [
            (d["key"], d["capacity_bytes"]) for d in expected["disks"]
        ]
    assert VirtualMachine.objects.get(name=SCRIPT_NAME).path == f"DC-East/Production/Web/{SCRIPT_NAME}"
    assert VirtualMachine.objects.get(name=NON_LATIN_NAME).folder.path == "DC-East/Finance"
    vc.refresh_from_db()
    assert vc.instance_uuid and vc.last_sync


def test_renamed_moved_and_deleted_vms_keep_their_identity(vcsim):
    vc = register(vcsim)
    full_sync(vc, vcsim)
    web = VirtualMachine.objects.get(name="web-01")
    gone = VirtualMachine.objects.get(name="root-vm")
    with vsphere.connect(
        vsphere.Endpoint(vcsim.host, vcsim.port, protocol="http"), vcsim.username, vcsim.password
    ) as conn:
        finance = Folder.objects.get(path="DC-East/Finance").moref
        vsphere.rename_vm(conn, web.moref, "web-01-renamed")
        vsphere.move_vm(conn, web.moref, finance)
        vsphere.destroy_vm(conn, gone.moref)
    full_sync(vc, vcsim)
    web_after = VirtualMachine.objects.get(pk=web.pk)
    assert (web_after.name, web_after.folder.path) == ("web-01-renamed", "DC-East/Finance")
    assert web_after.disks.count() == 2
    gone.refresh_from_db()
    assert gone.removed_at is not None  # kept, with whatever recovery points it has
    assert VirtualMachine.objects.count() == len(vcsim.vms())


def test_a_sync_that_fails_part_way_changes_nothing(vcsim, monkeypatch):
    vc = register(vcsim)
    full_sync(vc, vcsim)
    before = sorted(VirtualMachine.objects.values_list("pk", "name", "removed_at", "folder_id"))
    with vsphere.connect(
        vsphere.Endpoint(vcsim.host, vcsim.port, protocol="http"), vcsim.username, vcsim.password
    ) as conn:
        inventory = vsphere.fetch_inventory(conn)
    half = copy.copy(inventory)
    object.__setattr__(half, "vms", inventory.vms[:2])

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("protection.receivers.refresh_membership", explode)
    with pytest.raises(RuntimeError):
        apply_inventory(vc, half)
    assert sorted(VirtualMachine.objects.values_list("pk", "name", "removed_at", "folder_id")) == before


def test_two_vcenters_with_the_same_vms_do_not_collide(vcsim_factory):
    # The same instance UUIDs in both: identity is (vCenter, instance UUID), never the UUID alone.
    spec = copy.deepcopy(SMALL_SPEC)
    for n, vm in enumerate(vm for dc in spec["datacenters"] for f in dc["folders"] for vm in f.get("vms", [])):
        vm["instance_uuid"] = f"50000000-0000-0000-0000-{n:012d}"
    first, second = vcsim_factory(spec), vcsim_factory(spec)
    vc1, vc2 = register(first, "one"), register(second, "two")
    full_sync(vc1, first)
    full_sync(vc2, second)
    per_vcenter = len(first.vms())
    assert VirtualMachine.objects.filter(vcenter=vc1).count() == per_vcenter
    assert VirtualMachine.objects.filter(vcenter=vc2).count() == per_vcenter
    assert VirtualDisk.objects.filter(vm__vcenter=vc2).count() == VirtualDisk.objects.filter(vm__vcenter=vc1).count()
    shared = "50000000-0000-0000-0000-000000000000"
    assert set(VirtualMachine.objects.filter(instance_uuid=shared).values_list("vcenter__name", flat=True)) == {
        "one",
        "two",
    }


def synced_with_queries(vcsim_factory, folders: int, per_folder: int) -> int:
    """SQL statements of one full sync (the write) of a new vCenter of folders × per_folder VMs."""
    sim = vcsim_factory(bulk_spec(folders, per_folder))
    vc = register(sim, f"bulk-{folders}x{per_folder}")
    with vsphere.connect(vsphere.Endpoint(sim.host, sim.port, protocol="http"), sim.username, sim.password) as conn:
        inventory = vsphere.fetch_inventory(conn)
    with CaptureQueriesContext(connection) as queries:
        apply_inventory(vc, inventory)
    assert VirtualMachine.objects.filter(vcenter=vc).count() == folders * per_folder
    return len(queries)


def test_a_full_sync_takes_as_many_queries_for_120_vms_as_for_20(vcsim_factory):
    assert synced_with_queries(vcsim_factory, 6, 20) == synced_with_queries(vcsim_factory, 2, 10)


def test_beyond_one_batch_a_full_sync_adds_one_query_per_batch_of_vms_and_of_disks(vcsim_factory, monkeypatch):
    monkeypatch.setattr(sync, "BATCH", 10)
    # 20 VMs: two batches of VM rows and two of disk rows; 60 VMs: six of each.
    assert synced_with_queries(vcsim_factory, 6, 10) == synced_with_queries(vcsim_factory, 2, 10) + 2 * 4


def test_a_sync_that_adds_many_vms_leaves_the_planner_statistics_up_to_date(vcsim_factory, monkeypatch):
    monkeypatch.setattr(sync, "ANALYZE_AFTER", 20)
    synced_with_queries(vcsim_factory, 2, 10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [VirtualMachine._meta.db_table])
        assert cursor.fetchone()[0] == VirtualMachine.objects.count()


def test_the_sync_job_runs_on_a_real_worker_over_pinned_tls(
    vcsim_factory, run_worker, django_capture_on_commit_callbacks
):
    from inventory.actions import enqueue_sync
    from jobs.models import JobRun

    sim = vcsim_factory(tls=True)
    vc = VCenter(name="tls", host=sim.host, port=sim.port, username=sim.username, thumbprint=sim.thumbprint)
    vc.password = sim.password
    vc.save()
    with django_capture_on_commit_callbacks(execute=True):
        run = enqueue_sync(vc)
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.result["vms"] == len(sim.vms()) and run.progress_done == run.progress_total == 2
    assert "round trips" in run.log[1]["msg"]

    vc.password = "no-longer-valid"
    vc.save()
    with django_capture_on_commit_callbacks(execute=True):
        failed = enqueue_sync(vc)
    run_worker()
    failed.refresh_from_db()
    vc.refresh_from_db()
    assert failed.status == JobRun.Status.FAILED and "rejected the user name or password" in failed.error
    assert vc.last_sync_error == failed.error
    assert VirtualMachine.objects.filter(vcenter=vc, removed_at__isnull=True).count() == len(sim.vms())
