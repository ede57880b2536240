"""The self-healing store end to end: real backups of a simulated VM with a real ext4 disk, a flipped
byte in a chunk file, and the jobs run by a real RQ worker. Damage is found, recorded with its chunk,
and repaired — from the vault at once, or by the next backup of the VM — with the time and an audit row."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.models import AuditEntry
from inventory.models import VirtualMachine
from jobs import runner
from jobs.models import JobRun
from protection import actions as protection_actions
from tests.factories.protection import protect_simulator
from tests.factories.simulator import prod_spec
from tests.vault.app_points import use_directory_vault
from tools import diskimages
from vault import actions, engine, healing
from vault.models import RecoveryPoint
from vault.storage import local_store, remote_vault

pytestmark = pytest.mark.django_db

SPEC = prod_spec({"name": "lnx-01", "disks_mb": [40], "instance_uuid": "50000000-0000-0000-0000-00000000b001"})


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    """The simulator with one VM whose disk is a real ext4 image, its folder protected."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(SPEC, tls=True)
    sim.upload_disk_image("lnx-01", 0, diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40))
    protect_simulator(sim, parallelism=1)
    return sim


@pytest.fixture
def directory_vault(tmp_path) -> Path:
    return use_directory_vault(tmp_path / "vault")


@pytest.fixture
def jobs(run_worker, django_capture_on_commit_callbacks):
    """Start a job (or anything that queues one) and run it to its end with a real RQ worker."""

    def run(start) -> JobRun:
        with django_capture_on_commit_callbacks(execute=True):
            job = start()
        run_worker()
        job.refresh_from_db()
        return job

    return run


def back_up(jobs) -> JobRun:
    vm = VirtualMachine.objects.get(name="lnx-01")
    return jobs(lambda: protection_actions.backup_now(None, vm=vm)[0])


def verify(jobs, point: RecoveryPoint, tier: str = "local") -> JobRun:
    return jobs(lambda: runner.enqueue("vault.verify", params={"point_ids": [str(point.pk)], "tier": tier}))


def flip_a_byte(path: Path) -> bytes:
    """Flip one byte in the middle of a file, as a failing disk would; returns the original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    return original


def a_chunk_file(store_dir: Path) -> Path:
    return min(p for p in (store_dir / "chunks").rglob("*") if p.is_file())


def test_a_flipped_byte_is_found_by_verify_and_the_next_backup_of_the_vm_repairs_the_point(lab, jobs, settings):
    assert back_up(jobs).status == JobRun.Status.SUCCEEDED
    point = RecoveryPoint.objects.get()
    chunk = a_chunk_file(settings.BACKUP_STORE_DIR)
    flip_a_byte(chunk)

    run = verify(jobs, point)

    assert run.status == JobRun.Status.FAILED
    assert "VMs affected: lnx-01" in run.error and healing.NO_GOOD_COPY in run.error
    point.refresh_from_db()
    assert point.damaged and point.damaged_at and point.repaired_at is None
    assert point.damaged_chunks == [{"digest": chunk.name, "tier": "local"}]
    assert any(chunk.name in line for line in point.damage)
    assert not chunk.exists(), "the corrupt chunk is moved aside, so no backup reuses it"
    assert AuditEntry.objects.filter(action="point.damaged", target_id=str(point.pk)).count() == 1

    second = back_up(jobs)

    assert second.status == JobRun.Status.SUCCEEDED, second.error
    assert any("lnx-01" in line["msg"] and "repaired" in line["msg"] for line in second.log)
    point.refresh_from_db()
    assert not point.damaged and point.damaged_chunks == []
    assert point.repaired_at and point.repaired_at > point.damaged_at
    assert AuditEntry.objects.filter(action="point.repaired", target_id=str(point.pk)).count() == 1
    assert verify(jobs, point).status == JobRun.Status.SUCCEEDED
    assert engine.verify_point(local_store(), str(point.pk)).ok


def test_with_a_vault_holding_the_point_verify_repairs_a_local_chunk_at_once(lab, jobs, settings, directory_vault):
    assert back_up(jobs).status == JobRun.Status.SUCCEEDED
    point = RecoveryPoint.objects.get()
    assert jobs(lambda: actions.enqueue_replication(point)).status == JobRun.Status.SUCCEEDED
    chunk = a_chunk_file(settings.BACKUP_STORE_DIR)
    original = flip_a_byte(chunk)

    run = verify(jobs, point)

    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert any(f"Repaired in the local store: chunk {chunk.name}" in line["msg"] for line in run.log)
    point.refresh_from_db()
    assert not point.damaged and point.damaged_at and point.repaired_at >= point.damaged_at
    assert chunk.read_bytes() == original
    actions_done = set(AuditEntry.objects.filter(target_id=str(point.pk)).values_list("action", flat=True))
    assert {"point.damaged", "point.repaired"} <= actions_done
    assert AuditEntry.objects.filter(action="vault.repair").exists()


def test_a_corrupt_vault_chunk_is_repaired_from_the_local_copy(lab, jobs, settings, directory_vault):
    assert back_up(jobs).status == JobRun.Status.SUCCEEDED
    point = RecoveryPoint.objects.get()
    assert jobs(lambda: actions.enqueue_replication(point)).status == JobRun.Status.SUCCEEDED
    digest = bytes.fromhex(a_chunk_file(settings.BACKUP_STORE_DIR).name)
    blob = directory_vault / remote_vault().chunk_name(digest)
    original = flip_a_byte(blob)

    run = verify(jobs, point, tier="vault")

    assert run.status == JobRun.Status.SUCCEEDED, run.error
    point.refresh_from_db()
    assert not point.damaged and point.repaired_at and point.vault_verified_at
    assert blob.read_bytes() == original
    assert verify(jobs, point, tier="vault").status == JobRun.Status.SUCCEEDED


def test_replication_refuses_a_corrupt_local_chunk_marks_the_point_and_uploads_nothing_bad(
    lab, jobs, settings, directory_vault
):
    assert back_up(jobs).status == JobRun.Status.SUCCEEDED
    point = RecoveryPoint.objects.get()
    chunk = a_chunk_file(settings.BACKUP_STORE_DIR)
    flip_a_byte(chunk)

    run = jobs(lambda: actions.enqueue_replication(point))

    assert run.status == JobRun.Status.FAILED
    assert "nothing of it was uploaded" in run.error and healing.NO_GOOD_COPY in run.error
    point.refresh_from_db()
    assert point.damaged and point.damaged_chunks == [{"digest": chunk.name, "tier": "local"}]
    assert point.vault_status != RecoveryPoint.VaultStatus.REPLICATED
    assert not (directory_vault / remote_vault().chunk_name(bytes.fromhex(chunk.name))).exists()
    assert point.pk not in {p.pk for p in actions.replication_backlog()}, "not retried while damaged"

    assert back_up(jobs).status == JobRun.Status.SUCCEEDED  # writes the chunk again
    point.refresh_from_db()
    assert not point.damaged and point.repaired_at
    assert jobs(lambda: actions.enqueue_replication(point)).status == JobRun.Status.SUCCEEDED


def test_a_backup_manifest_holds_everything_its_rows_hold(lab, jobs):
    """So a store point whose row was never written (a worker killed in between) can be adopted."""
    run = back_up(jobs)
    assert run.status == JobRun.Status.SUCCEEDED
    point = RecoveryPoint.objects.select_related("vm").get()
    meta = local_store().open_point(str(point.pk)).meta

    assert meta["vm"] == "lnx-01" and meta["vm_id"] == point.vm_id and meta["group_id"] == point.group_id
    assert meta["instance_uuid"] == point.vm.instance_uuid and meta["vcenter"] == point.vm.vcenter.name
    assert meta["job"] == str(run.pk) and meta["config"] == point.config
    assert meta["created"] == point.created.isoformat() and meta["completed"] == point.completed.isoformat()
    assert (meta["consistency"], meta["consistency_note"]) == (point.consistency, point.consistency_note)
    for name in ("logical_bytes", "new_bytes", "read_bytes"):
        assert meta[name] == getattr(point, name)
    fields = [
        "key", "label", "capacity_bytes", "file_name", "read_path", "read_reason", "change_id",
        "bytes_read", "new_bytes", "chunks", "new_chunks", "zero_chunks",
    ]  # fmt: skip
    assert meta["disks"] == list(point.disks.order_by("key").values(*fields))
