"""Whole-VM restores against the simulator: a new VM with the captured hardware and byte-identical
disks; over the original after a change; refused when the disk layout changed; the command line."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from inventory import vcenter as vsphere
from inventory.models import Datastore, Folder, ResourcePool
from jobs.models import JobRun
from recovery import actions
from recovery.models import Restore
from tests.protection.test_backup import back_up, make_lab, padded_sha256
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return make_lab(vcsim_factory, settings, tmp_path)


def connect(sim):
    return vsphere.connect(sim.host, sim.port, sim.username, sim.password, thumbprint=sim.thumbprint)


def disk_sha256(sim, moref_or_name: str, disk_index: int, capacity: int) -> str:
    with connect(sim) as conn:
        config = vsphere.vm_config(conn, moref_or_name)
    disk = sorted(config["disks"], key=lambda d: d["key"])[disk_index]
    match = disk["file_name"]
    datastore, path = match[1:].split("] ", 1)
    path = path.replace(".vmdk", "-flat.vmdk") if not path.endswith("-flat.vmdk") else path
    digest = hashlib.sha256()
    with connect(sim) as conn, vsphere.DatastoreFile(conn, "DC", datastore, path, size=capacity) as f:
        buffer = vsphere.read_buffer()
        offset = 0
        while offset < capacity:
            n = f.readinto(offset, buffer[: min(len(buffer), capacity - offset)])
            digest.update(buffer[:n])
            offset += n
    return digest.hexdigest()


def run_restore(point, target, run_worker, capture, user=None) -> JobRun:
    with capture(execute=True):
        run = actions.start_vm_restore(user, point, target)
    run_worker()
    run.refresh_from_db()
    return run


def new_vm_target(name: str) -> dict:
    return {
        "mode": "new",
        "name": name,
        "folder_id": Folder.objects.get(path="DC/Prod").pk,
        "pool_id": ResourcePool.objects.first().pk,
        "datastore_id": Datastore.objects.get(name="ds1").pk,
        "host_id": None,
    }


def test_restore_to_a_new_vm_recreates_the_hardware_and_the_disks_byte_identical(
    lab,
    run_worker,
    django_capture_on_commit_callbacks,
    admin,
):
    sim, vc, group, images = lab
    assert back_up("win-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    point = RecoveryPoint.objects.get(vm__name="win-01")

    run = run_restore(point, new_vm_target("win-01 restored"), run_worker, django_capture_on_commit_callbacks, admin)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert "every chunk checked against the point" in " ".join(line["msg"] for line in run.log)
    with connect(sim) as conn:
        restored = vsphere.vm_config(conn, run.result["moref"])
        [info] = vsphere.fetch_vms(conn, [run.result["moref"]])
    original = point.config
    for field in ("num_cpu", "memory_mb", "guest_id"):
        if field in original:
            assert restored[field] == original[field], field
    assert [d["capacity_bytes"] for d in restored["disks"]] == [d["capacity_bytes"] for d in original["disks"]]
    assert info.instance_uuid != point.vm.instance_uuid and info.name == "win-01 restored"
    for disk_index, image in enumerate((images[("win-01", 0)], images[("win-01", 1)])):
        capacity = sorted(original["disks"], key=lambda d: d["key"])[disk_index]["capacity_bytes"]
        assert disk_sha256(sim, run.result["moref"], disk_index, capacity) == padded_sha256(image, capacity)
    restore = Restore.objects.get(kind="vm")
    assert restore.status == "completed" and restore.bytes_restored == point.logical_bytes
    assert AuditEntry.objects.filter(action="restore.vm", actor__username="alice").exists()


def test_restore_over_the_original_brings_the_old_bytes_back(
    lab,
    run_worker,
    django_capture_on_commit_callbacks,
):
    sim, vc, group, images = lab
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    point = RecoveryPoint.objects.get(vm__name="lnx-01")
    sim.write_disk_range("lnx-01", 0, 1024 * 1024, b"ransomware was here" * 1000)
    capacity = point.disks.get().capacity_bytes
    assert disk_sha256(sim, point.vm.moref, 0, capacity) != padded_sha256(images[("lnx-01", 0)], capacity)

    run = run_restore(point, {"mode": "overwrite"}, run_worker, django_capture_on_commit_callbacks)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert disk_sha256(sim, point.vm.moref, 0, capacity) == padded_sha256(images[("lnx-01", 0)], capacity)
    with connect(sim) as conn:
        assert vsphere.power_state(conn, point.vm.moref) == "poweredOff"


def test_restore_over_the_original_is_refused_when_its_disks_changed(
    lab,
    run_worker,
    django_capture_on_commit_callbacks,
):
    sim, vc, group, images = lab
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    point = RecoveryPoint.objects.get(vm__name="lnx-01")
    with connect(sim) as conn:
        vsphere.add_disk(conn, point.vm.moref, 8 * 1024 * 1024)
        state = vsphere.power_state(conn, point.vm.moref)

    run = run_restore(point, {"mode": "overwrite"}, run_worker, django_capture_on_commit_callbacks)

    assert run.status == JobRun.Status.FAILED
    assert "changed since the point" in run.error and "was added since the point" in run.error
    with connect(sim) as conn:
        assert vsphere.power_state(conn, point.vm.moref) == state  # nothing was done
    assert Restore.objects.get(kind="vm").status == "failed"


def test_restore_vm_command_and_a_name_that_exists_is_refused(
    lab,
    run_worker,
    django_capture_on_commit_callbacks,
):
    sim, vc, group, images = lab
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    with pytest.raises(Exception, match="exists already"):
        call_command(
            "restore-vm",
            "lnx-01",
            "--name",
            "win-01",
            "--folder",
            "DC/Prod",
            "--datastore",
            "ds1",
            "--pool",
            ResourcePool.objects.first().name,
            stdout=io.StringIO(),
        )
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "restore-vm",
            "lnx-01",
            "--name",
            "lnx-01 copy",
            "--folder",
            "DC/Prod",
            "--datastore",
            "ds1",
            "--pool",
            ResourcePool.objects.first().name,
            stdout=out,
        )
    run_worker()
    assert JobRun.objects.get(kind="recovery.restore_vm").status == "succeeded"
    assert AuditEntry.objects.filter(action="restore.vm", actor_name="command line").exists()


def test_one_disk_of_a_point_is_restored_into_an_existing_vms_disk(
    lab, run_worker, django_capture_on_commit_callbacks, as_admin
):
    from inventory.models import VirtualDisk

    sim, vc, group, images = lab
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    point = RecoveryPoint.objects.get(vm__name="lnx-01")
    source = point.disks.get()
    target = VirtualDisk.objects.get(vm__name="win-01", capacity_bytes=source.capacity_bytes)  # its 40 MB data disk

    refused = as_admin.post(
        f"/recovery/points/{point.pk}/restore-vm/",
        {"mode": "disk", "source_disk": source.key, "target_disk": target.pk, "confirm": "lnx-01"},
    )
    assert "Type win-01 exactly" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = as_admin.post(
            f"/recovery/points/{point.pk}/restore-vm/",
            {"mode": "disk", "source_disk": source.key, "target_disk": target.pk, "confirm": "win-01"},
        )
    assert response.status_code == 302
    run_worker()

    run = JobRun.objects.get(kind="recovery.restore_vm")
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    with connect(sim) as conn:
        disks = sorted(vsphere.vm_config(conn, target.vm.moref)["disks"], key=lambda d: d["key"])
    position = [d["key"] for d in disks].index(target.key)
    expected = padded_sha256(images[("lnx-01", 0)], target.capacity_bytes)
    assert disk_sha256(sim, target.vm.moref, position, target.capacity_bytes) == expected
