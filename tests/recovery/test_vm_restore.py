"""Whole-VM restores against the simulator: a new VM with the captured hardware and byte-identical
disks; over the original after a change; refused when the disk layout changed; the command line."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from inventory import vcenter as vsphere
from inventory.models import Datastore, Folder, ResourcePool, VirtualDisk
from jobs.models import JobRun
from recovery.models import Restore
from tests.factories.protection import padded_sha256, start_backup_lab
from tests.factories.recovery import disk_sha256

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return start_backup_lab(vcsim_factory, settings, tmp_path)


def connect(sim):
    return vsphere.connect(vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint), sim.username, sim.password)


def new_vm_target(name: str) -> dict:
    return {
        "mode": "new",
        "name": name,
        "folder_id": Folder.objects.get(path="DC/Prod").pk,
        "pool_id": ResourcePool.objects.first().pk,
        "datastore_id": Datastore.objects.get(name="ds1").pk,
        "host_id": None,
    }


def test_restore_to_a_new_vm_recreates_the_hardware_and_the_disks_byte_identical(lab, backed_up, restored, admin):
    sim, _vc, _group, images = lab
    point = backed_up("win-01")

    run = restored(point, new_vm_target("win-01 restored"), admin)

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


def test_restore_over_the_original_brings_the_old_bytes_back(lab, backed_up, restored):
    sim, _vc, _group, images = lab
    point = backed_up("lnx-01")
    sim.write_disk_range("lnx-01", 0, 1024 * 1024, b"ransomware was here" * 1000)
    capacity = point.disks.get().capacity_bytes
    assert disk_sha256(sim, point.vm.moref, 0, capacity) != padded_sha256(images[("lnx-01", 0)], capacity)

    run = restored(point, {"mode": "overwrite"})

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert disk_sha256(sim, point.vm.moref, 0, capacity) == padded_sha256(images[("lnx-01", 0)], capacity)
    with connect(sim) as conn:
        assert vsphere.power_state(conn, point.vm.moref) == "poweredOff"


def test_restore_over_the_original_is_refused_when_its_disks_changed(lab, backed_up, restored):
    sim, _vc, _group, _images = lab
    point = backed_up("lnx-01")
    with connect(sim) as conn:
        vsphere.add_disk(conn, point.vm.moref, 8 * 1024 * 1024)
        state = vsphere.power_state(conn, point.vm.moref)

    run = restored(point, {"mode": "overwrite"})

    assert run.status == JobRun.Status.FAILED
    assert "changed since the point" in run.error and "was added since the point" in run.error
    with connect(sim) as conn:
        assert vsphere.power_state(conn, point.vm.moref) == state  # nothing was done
    assert Restore.objects.get(kind="vm").status == "failed"


def restore_vm_command(vm_name: str, new_name: str) -> None:
    """manage.py restore-vm VM --name NEW into DC/Prod on ds1."""
    pool = ResourcePool.objects.first().name
    place = ["--folder", "DC/Prod", "--datastore", "ds1", "--pool", pool]
    call_command("restore-vm", vm_name, "--name", new_name, *place, stdout=io.StringIO())


def test_restore_vm_command_and_a_name_that_exists_is_refused(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks
):
    backed_up("lnx-01")
    with pytest.raises(Exception, match="exists already"):
        restore_vm_command("lnx-01", "win-01")
    with django_capture_on_commit_callbacks(execute=True):
        restore_vm_command("lnx-01", "lnx-01 copy")
    run_worker()
    assert JobRun.objects.get(kind="recovery.restore_vm").status == "succeeded"
    assert AuditEntry.objects.filter(action="restore.vm", actor_name="command line").exists()


def test_restore_vm_command_over_the_original_asks_for_the_vms_name_unless_yes(lab, backed_up, monkeypatch):
    backed_up("lnx-01")
    monkeypatch.setattr("builtins.input", lambda _prompt: "lnx-02")
    with pytest.raises(CommandError, match="Not confirmed; nothing was changed."):
        call_command("restore-vm", "lnx-01", "--overwrite", stdout=io.StringIO())
    assert not JobRun.objects.filter(kind="recovery.restore_vm").exists()

    call_command("restore-vm", "lnx-01", "--overwrite", "--yes", stdout=io.StringIO())
    assert JobRun.objects.get(kind="recovery.restore_vm").params["target"] == {"mode": "overwrite"}


def test_one_disk_of_a_point_is_restored_into_an_existing_vms_disk(
    lab, backed_up, run_worker, django_capture_on_commit_callbacks, as_admin
):
    sim, _vc, _group, images = lab
    point = backed_up("lnx-01")
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
