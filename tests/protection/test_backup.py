"""Backups against the simulator with real NTFS and ext4 disks: byte-identical points, dedup of
unchanged chunks, user snapshots tolerated, our snapshot always removed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from inventory import vcenter as vsphere
from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection import claims
from tests.factories.protection import back_up, padded_sha256, protect_simulator, start_backup_lab
from tests.factories.simulator import prod_spec
from tests.fixtures.vcsim import connect_to
from tools import diskimages
from vault import engine
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return start_backup_lab(vcsim_factory, settings, tmp_path)


def restored_sha256(point: RecoveryPoint, key: int, tmp_path: Path) -> str:
    from django.conf import settings

    st = engine.Store(settings.BACKUP_STORE_DIR)
    out = tmp_path / f"restore-{key}.img"
    engine.restore_disk(st, st.open_point(str(point.pk)).index(str(key)), out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_a_backup_is_byte_identical_and_the_snapshot_is_gone(
    lab, run_worker, django_capture_on_commit_callbacks, tmp_path
):
    sim, vc, group, images = lab
    run = back_up("win-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    point = RecoveryPoint.objects.get(vm__name="win-01")
    assert point.consistency == "application" and point.config["disks"]
    disks = list(point.disks.order_by("key"))
    assert [d.read_path for d in disks] == ["full", "full"]
    for disk, index in zip(disks, (0, 1), strict=True):
        assert restored_sha256(point, disk.key, tmp_path) == padded_sha256(
            images[("win-01", index)], disk.capacity_bytes
        )
    assert run.progress_done == run.progress_total == 88 * MiB
    with connect_to(sim) as conn:
        assert vsphere.list_snapshots(conn, point.vm.moref) == []


def test_a_second_backup_after_changing_a_file_stores_only_the_changed_chunks(
    lab, run_worker, django_capture_on_commit_callbacks, tmp_path
):
    import random

    sim, vc, group, images = lab
    tree = diskimages.sample_linux_tree()
    tree["srv"] = {f"big-{n}.bin": random.Random(n).randbytes(3 * MiB) for n in range(6)}
    image = diskimages.build_ext4_disk(tree, size_mib=40)
    sim.upload_disk_image("lnx-01", 0, image)
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    # Change 4 KiB inside one file, in place, as an application rewriting part of a file does.
    data = bytearray(image.read_bytes())
    offset = data.find(tree["srv"]["big-3.bin"][: 64 * 1024]) + 8192
    data[offset : offset + 4096] = b"\xab" * 4096
    changed = tmp_path / "changed.img"
    changed.write_bytes(data)
    sim.upload_disk_image("lnx-01", 0, changed)
    run = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    first, second = RecoveryPoint.objects.filter(vm__name="lnx-01").order_by("created")
    (disk,) = second.disks.all()
    assert first.disks.get().new_chunks >= 5
    assert disk.new_chunks == 1 and disk.read_path == "full"
    assert restored_sha256(second, disk.key, tmp_path) == padded_sha256(changed, disk.capacity_bytes)
    assert restored_sha256(first, disk.key, tmp_path) == padded_sha256(image, disk.capacity_bytes)


def test_a_vm_with_a_user_snapshot_is_backed_up_and_keeps_it(lab, run_worker, django_capture_on_commit_callbacks):
    sim, *_ = lab
    vm = VirtualMachine.objects.get(name="lnx-01")
    with connect_to(sim) as conn:
        vsphere.create_snapshot(conn, vm.moref, "before patching", "the administrator's own", quiesce=False)
    run = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    with connect_to(sim) as conn:
        assert [s.name for s in vsphere.list_snapshots(conn, vm.moref)] == ["before patching"]


def test_verify_finds_a_flipped_byte_and_names_the_vm(lab, run_worker, django_capture_on_commit_callbacks):
    import json

    from django.conf import settings
    from django.core.management import call_command

    from jobs import runner

    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    (row,) = json.loads(_call(call_command, "points", "lnx-01", "--json"))
    assert row["disks"][0]["read_path"] == "full" and not row["damaged"]
    chunk = next(p for p in (settings.BACKUP_STORE_DIR / "chunks").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(data)
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("vault.verify", params={"point_ids": [row["id"]]})
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.FAILED and "VMs affected: lnx-01" in run.error
    point = RecoveryPoint.objects.get(pk=row["id"])
    assert point.damaged and point.verified_at and point.damage


def _call(call_command, *args) -> str:
    import io

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_leftover_backup_snapshots_are_removed_and_others_kept(lab, run_worker, django_capture_on_commit_callbacks):
    from jobs import runner
    from protection.backup import SNAPSHOT_NAME, SNAPSHOT_TAG

    sim, vc, *_ = lab
    vm = VirtualMachine.objects.get(name="lnx-01")
    running = JobRun.objects.create(kind="protection.backup", title="x", status=JobRun.Status.RUNNING)
    with connect_to(sim) as conn:
        vsphere.create_snapshot(
            conn, vm.moref, SNAPSHOT_NAME, f"{SNAPSHOT_TAG} job=0b9a0000-0000-0000-0000-000000000000", False
        )
        vsphere.create_snapshot(conn, vm.moref, SNAPSHOT_NAME, f"{SNAPSHOT_TAG} job={running.pk}", False)
        vsphere.create_snapshot(conn, vm.moref, "vmbackup", "an administrator's snapshot with our name", False)
    VirtualMachine.objects.filter(pk=vm.pk).update(snapshot_count=3)
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("protection.cleanup_snapshots")
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED and run.result == {"removed": 1}
    with connect_to(sim) as conn:
        left = sorted(s.description for s in vsphere.list_snapshots(conn, vm.moref))
    assert left == sorted([f"{SNAPSHOT_TAG} job={running.pk}", "an administrator's snapshot with our name"])


def test_a_full_store_fails_cleanly_and_keeps_earlier_points(
    lab, run_worker, django_capture_on_commit_callbacks, settings, tmp_path
):
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    first = RecoveryPoint.objects.get(vm__name="lnx-01")
    used = engine.Store(settings.BACKUP_STORE_DIR).used_bytes()
    settings.BACKUP_STORE_QUOTA = used + 1024 * 1024  # room for almost nothing new
    run = back_up("win-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.FAILED
    assert "The backup store is full" in run.error and "Earlier recovery points are intact" in run.error
    assert not RecoveryPoint.objects.filter(vm__name="win-01").exists()
    assert engine.Store(settings.BACKUP_STORE_DIR).list_points() == [str(first.pk)]
    (disk,) = first.disks.all()
    assert restored_sha256(first, disk.key, tmp_path)  # still restorable
    sim = lab[0]
    with connect_to(sim) as conn:
        assert vsphere.list_snapshots(conn, VirtualMachine.objects.get(name="win-01").moref) == []


def test_with_changed_block_tracking_only_the_changed_areas_are_read(
    lab, run_worker, django_capture_on_commit_callbacks, tmp_path
):
    sim, *_ = lab
    vm = VirtualMachine.objects.get(name="lnx-01")
    with connect_to(sim) as conn:
        vsphere.enable_change_tracking(conn, vm.moref)
    first = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert first.status == "succeeded", first.error
    first_point = RecoveryPoint.objects.get(vm=vm)
    first_disk = first_point.disks.get()
    # A first backup reads only the areas in use (change id "*"): the disk's zero tail is not read.
    assert first_disk.read_path == "cbt" and first_disk.change_id
    assert "No earlier point with a change id: read the" in first_disk.read_reason
    assert first_disk.bytes_read < first_disk.capacity_bytes
    image = bytearray(lab[3][("lnx-01", 0)].read_bytes())
    image += bytes(first_disk.capacity_bytes - len(image))
    assert restored_sha256(first_point, first_disk.key, tmp_path) == hashlib.sha256(image).hexdigest()
    sim.write_disk_range("lnx-01", 0, 20 * MiB, b"\x5a" * MiB)
    second = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert second.status == "succeeded", second.error
    point = RecoveryPoint.objects.filter(vm=vm).order_by("-created").first()
    disk = point.disks.get()
    assert disk.read_path == "cbt" and "1.0 MiB changed" in disk.read_reason
    assert disk.bytes_read == 4 * MiB and disk.new_chunks == 1
    expected = bytearray(lab[3][("lnx-01", 0)].read_bytes())
    expected += bytes(disk.capacity_bytes - len(expected))
    expected[20 * MiB : 21 * MiB] = b"\x5a" * MiB
    assert restored_sha256(point, disk.key, tmp_path) == hashlib.sha256(expected).hexdigest()


def test_two_backups_of_one_vm_never_run_at_once(lab, run_worker, django_capture_on_commit_callbacks):
    vm = VirtualMachine.objects.get(name="lnx-01")
    holder = JobRun.objects.create(kind="protection.backup", title="other", status=JobRun.Status.RUNNING)
    assert claims.claim_vm(vm.pk, holder.pk)
    run = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.FAILED and "Another backup of lnx-01 is running" in run.error
    JobRun.objects.filter(pk=holder.pk).update(status=JobRun.Status.ERRORED)  # its worker died
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    assert claims.claim_holder_id(vm.pk) is None


def test_a_vcenter_that_stops_answering_mid_read_fails_the_job_clearly(
    lab, run_worker, django_capture_on_commit_callbacks, monkeypatch, settings
):
    sim, *_ = lab
    real_readinto = vsphere.DatastoreFile.readinto
    calls = []

    def readinto_then_stop(self, offset, buffer):
        calls.append(offset)
        if len(calls) == 2:
            sim.stop()  # vCenter goes away in the middle of the disk
        return real_readinto(self, offset, buffer)

    monkeypatch.setattr(vsphere.DatastoreFile, "readinto", readinto_then_stop)
    run = back_up("win-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.FAILED, (run.status, run.error, run.traceback)
    assert run.error.startswith("Reading win-01 from vCenter failed") and "No recovery point was written" in run.error
    assert not RecoveryPoint.objects.exists()
    assert engine.Store(settings.BACKUP_STORE_DIR).list_points() == []
    assert any("next inventory sync removes it" in line["msg"] for line in run.log)
    assert claims.claim_holder_id(VirtualMachine.objects.get(name="win-01").pk) is None


def test_an_independent_disk_is_skipped_with_a_visible_reason(lab, run_worker, django_capture_on_commit_callbacks):
    from inventory.models import VirtualDisk
    from inventory.sync import not_protectable_reason

    # vcsim's spec has no disk modes, so mark the second disk as vSphere would report it after a sync.
    disk = VirtualDisk.objects.get(vm__name="win-01", label="Hard disk 2")
    disk.disk_mode = "independent_persistent"
    disk.not_protectable_reason = not_protectable_reason(
        vsphere.DiskInfo(
            key=disk.key,
            label=disk.label,
            capacity_bytes=disk.capacity_bytes,
            file_name=disk.file_name,
            datastore_name="ds1",
            datastore_moref="",
            path="",
            thin=True,
            disk_mode=disk.disk_mode,
            backing="flat",
            controller_key=1000,
            unit_number=1,
        )
    )
    disk.save()
    run = back_up("win-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert any("Hard disk 2 skipped: Independent disk" in line["msg"] for line in run.log)
    assert list(RecoveryPoint.objects.get(vm__name="win-01").disks.values_list("label", flat=True)) == ["Hard disk 1"]


def test_cancel_mid_disk_stops_cleans_up_and_writes_nothing(
    lab, run_worker, django_capture_on_commit_callbacks, monkeypatch, settings
):
    from jobs import runner as job_runner

    sim, *_ = lab
    monkeypatch.setattr(job_runner, "CANCEL_CHECK_INTERVAL", 0)
    real_progress = job_runner.JobContext.progress

    def progress_then_cancel(self, done):
        # Stands in for an administrator pressing Cancel once the first disk's reading has begun.
        if self.run.kind == "protection.backup" and done > 0:
            JobRun.objects.filter(pk=self.run.pk).update(cancel_requested=True)
        return real_progress(self, done)

    monkeypatch.setattr(job_runner.JobContext, "progress", progress_then_cancel)
    run = back_up("win-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.CANCELLED, (run.status, run.error)
    assert not RecoveryPoint.objects.exists()
    assert engine.Store(settings.BACKUP_STORE_DIR).list_points() == []
    assert not [p for p in (settings.BACKUP_STORE_DIR / "chunks").rglob("*") if p.is_file()]
    assert snapshots_of(sim, "win-01") == []


def snapshots_of(sim, vm_name: str) -> list[str]:
    vm = VirtualMachine.objects.get(name=vm_name)
    with connect_to(sim) as conn:
        return [s.name for s in vsphere.list_snapshots(conn, vm.moref)]


def test_the_global_limit_makes_a_backup_wait_for_a_free_slot(
    lab, run_worker, django_capture_on_commit_callbacks, settings, monkeypatch
):
    from protection import jobs as protection_jobs
    from protection.models import BackupSlot

    settings.MAX_CONCURRENT_BACKUPS = 1
    monkeypatch.setattr(protection_jobs, "SLOT_POLL_SECONDS", 0.05)
    other = JobRun.objects.create(kind="protection.backup", title="other VM", status=JobRun.Status.RUNNING)
    BackupSlot.objects.create(number=1, job=other.pk)
    real_sleep = protection_jobs.time.sleep

    def sleep_then_free(seconds):
        # The other backup finishes while this one waits.
        JobRun.objects.filter(pk=other.pk).update(status=JobRun.Status.SUCCEEDED)
        BackupSlot.objects.filter(job=other.pk).update(job=None)
        real_sleep(seconds)

    monkeypatch.setattr(protection_jobs.time, "sleep", sleep_then_free)
    run = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.log[0]["msg"].startswith("Waiting: 1 backups are already running")
    assert BackupSlot.objects.get(number=1).job is None


QUIESCE_SPEC = prod_spec({"name": "db-quiesce-fails", "disks_mb": [8]})


@pytest.mark.parametrize("fallback", [True, False])
def test_a_quiesce_failure_falls_back_to_crash_consistent_only_when_allowed(
    vcsim_factory, settings, tmp_path, run_worker, django_capture_on_commit_callbacks, fallback
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(QUIESCE_SPEC, tls=True)
    protect_simulator(sim, group_name="DB", fallback_to_crash=fallback)
    run = back_up("db-quiesce-fails", run_worker, django_capture_on_commit_callbacks)
    if fallback:
        assert run.status == JobRun.Status.SUCCEEDED, run.error
        point = RecoveryPoint.objects.get()
        assert point.consistency == "crash" and "Quiescing failed" in point.consistency_note
    else:
        assert run.status == JobRun.Status.FAILED and "does not allow a fallback" in run.error
        assert not RecoveryPoint.objects.exists()
    assert snapshots_of(sim, "db-quiesce-fails") == []
