"""Restores that write over an existing VM (overwrite, one disk) check first: a point with a corrupt
chunk is refused before the VM is powered off or a byte is written, and the VM's backup claim keeps a
backup and such a restore from running at once. Against the simulator, with real backups, powered-on
VMs and a byte flipped in a real chunk file."""

from __future__ import annotations

import random

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry
from inventory import vcenter as vsphere
from inventory.models import VirtualDisk, VirtualMachine
from jobs.models import JobRun
from jobs.runner import JobContext, JobFailed
from protection import claims
from protection import jobs as protection_jobs
from protection.scheduling import BACKUP_KIND
from recovery.models import Restore
from tests.factories.protection import backup_lab_spec, protect_simulator
from tests.factories.recovery import disk_sha256
from tests.fixtures.vcsim import connect_to
from vault import engine
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    """The backup lab (tests.factories.protection), with its VMs running: a restore that powers one off is visible."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(backup_lab_spec(power_on=True), tls=True)
    for (name, index), image in _images().items():
        sim.upload_disk_image(name, index, image)
    protect_simulator(sim, parallelism=1)
    return sim


def _images() -> dict:
    from tools import diskimages

    return {
        ("win-01", 1): diskimages.build_ext4_disk({"data.txt": "data disk\n"}, size_mib=40, label="data"),
        ("lnx-01", 0): diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40),
    }


def digests(point: RecoveryPoint) -> set[bytes]:
    stored = engine.Store(settings.BACKUP_STORE_DIR).open_point(str(point.pk))
    return {d for key in stored.disk_keys for d in stored.index(key).referenced()}


def flip_a_byte(digest: bytes) -> None:
    """Damage a chunk file on disk as a failing sector would: same size, one byte different."""
    path = engine.Store(settings.BACKUP_STORE_DIR).chunk_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


def power_state(sim, vm: VirtualMachine) -> str:
    with connect_to(sim) as conn:
        return vsphere.power_state(conn, vm.moref)


def taken(point: RecoveryPoint) -> str:
    return f"{timezone.localtime(point.created):%Y-%m-%d %H:%M}"


def test_an_overwrite_from_a_damaged_point_is_refused_before_the_vm_is_touched_and_names_the_intact_point(
    lab, backed_up, restored
):
    sim = lab
    intact = backed_up("lnx-01")
    sim.write_disk_range("lnx-01", 0, 8 * MiB, random.Random(3).randbytes(MiB))
    damaged = backed_up("lnx-01")
    bad = sorted(digests(damaged) - digests(intact))[0]
    flip_a_byte(bad)
    vm, capacity = damaged.vm, damaged.disks.get().capacity_bytes
    before = disk_sha256(sim, vm.moref, 0, capacity)
    assert power_state(sim, vm) == "poweredOn"

    run = restored(damaged, {"mode": "overwrite"})

    assert run.status == JobRun.Status.FAILED, (run.error, run.traceback)
    assert run.error.startswith(f"Refused: this recovery point is damaged (chunk {bad.hex()} of ")
    assert "; nothing was changed." in run.error
    assert run.error.endswith(f"The newest intact point of lnx-01 is {taken(intact)}.")
    assert power_state(sim, vm) == "poweredOn"
    assert disk_sha256(sim, vm.moref, 0, capacity) == before
    damaged.refresh_from_db()
    assert damaged.damaged and damaged.damaged_at is not None
    assert damaged.damaged_chunks == [{"digest": bad.hex(), "tier": "local"}]
    assert AuditEntry.objects.filter(action="point.damaged", target_id=str(damaged.pk)).count() == 1
    assert Restore.objects.get(kind="vm").status == "failed"
    assert claims.claim_holder_id(vm.pk) is None


def test_a_disk_restore_from_a_damaged_point_is_refused_before_the_target_is_touched(lab, backed_up, restored):
    sim = lab
    point = backed_up("lnx-01")
    bad = sorted(digests(point))[0]
    flip_a_byte(bad)
    source = point.disks.get()
    target = VirtualDisk.objects.get(vm__name="win-01", capacity_bytes=source.capacity_bytes)
    position = sorted(VirtualDisk.objects.filter(vm=target.vm).values_list("key", flat=True)).index(target.key)
    before = disk_sha256(sim, target.vm.moref, position, target.capacity_bytes)
    disk_mode = {"mode": "disk", "source_disk": source.key, "vm_id": target.vm_id, "disk_key": target.key}

    run = restored(point, disk_mode)

    assert run.status == JobRun.Status.FAILED, (run.error, run.traceback)
    assert run.error.startswith(f"Refused: this recovery point is damaged (chunk {bad.hex()} of ")
    assert run.error.endswith("nothing was changed. lnx-01 has no intact point.")
    assert power_state(sim, target.vm) == "poweredOn"
    assert disk_sha256(sim, target.vm.moref, position, target.capacity_bytes) == before
    point.refresh_from_db()
    assert point.damaged and point.damaged_chunks == [{"digest": bad.hex(), "tier": "local"}]
    assert claims.claim_holder_id(target.vm_id) is None


def test_an_overwrite_while_a_backup_of_the_vm_runs_fails_at_once_and_changes_nothing(lab, backed_up, restored):
    sim = lab
    point = backed_up("lnx-01")
    vm, capacity = point.vm, point.disks.get().capacity_bytes
    sim.write_disk_range("lnx-01", 0, 8 * MiB, b"changed since the point" * 1000)
    before = disk_sha256(sim, vm.moref, 0, capacity)
    backup = JobRun.objects.create(kind=BACKUP_KIND, title="Backup lnx-01", status=JobRun.Status.RUNNING)
    assert claims.claim_vm(vm.pk, backup.pk)

    run = restored(point, {"mode": "overwrite"})

    assert run.status == JobRun.Status.FAILED, (run.error, run.traceback)
    assert run.error == "A backup of lnx-01 is running; try again when it has finished."
    assert power_state(sim, vm) == "poweredOn"
    assert disk_sha256(sim, vm.moref, 0, capacity) == before
    assert claims.claim_holder_id(vm.pk) == backup.pk


def test_an_overwrite_holds_the_vms_backup_claim_so_a_backup_started_meanwhile_is_refused(
    lab, backed_up, restored, monkeypatch
):
    point = backed_up("lnx-01")
    vm = point.vm
    seen: dict = {}
    real_power_off = vsphere.power_off

    def power_off_while_a_backup_tries_to_start(conn, moref):
        # The moment between the check and the first write: the restore must hold the VM by now.
        seen["claim"] = claims.claim_holder_id(vm.pk)
        seen["backup"] = try_a_backup(vm)
        real_power_off(conn, moref)

    monkeypatch.setattr(vsphere, "power_off", power_off_while_a_backup_tries_to_start)

    run = restored(point, {"mode": "overwrite"})

    assert seen["claim"] == run.pk
    assert seen["backup"] == "A restore of lnx-01 is running; this one was not started."
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert "Every chunk of the point reads back intact." in [line["msg"] for line in run.log]
    assert claims.claim_holder_id(vm.pk) is None  # released at the end
    monkeypatch.setattr(vsphere, "power_off", real_power_off)
    backed_up("lnx-01")


def try_a_backup(vm: VirtualMachine) -> str:
    """Run the real backup job's handler for the VM, as a worker would; its failure message."""
    run = JobRun.objects.create(kind=BACKUP_KIND, title=f"Backup {vm.name}", status=JobRun.Status.RUNNING)
    try:
        protection_jobs.backup(JobContext(run), vm.pk, vm.protection_group_id, None, None)
    except JobFailed as exc:
        return str(exc)
    return "started"
