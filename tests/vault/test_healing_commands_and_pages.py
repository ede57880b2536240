"""Damage and repair as people see them: `manage.py vault repair` and `vault reconcile`, the nightly
chain, and the pages that show a point's health. Real store points written from small real images,
real rows, jobs run by a real RQ worker."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from jobs import runner
from jobs.models import JobRun
from tests.vault import DISK
from tests.vault.app_points import back_up_point, protected_vm, replicate, use_directory_vault
from tests.waiting import wait_until
from vault import engine, healing, jobs
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store, tiered_store

NOW = timezone.now()


@pytest.fixture
def make_point(settings, tmp_path):
    """A VM in a protection group, and a way to give it real recovery points (store point + row)."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vm, group = protected_vm(local_count=5)

    def make(created: dt.datetime = NOW, seed: int = 0, **fields) -> RecoveryPoint:
        return back_up_point(vm, group, tmp_path / f"img-{seed}", created, seed, **fields)[0]

    return make


def chunk_files(point: RecoveryPoint) -> list[Path]:
    store = local_store()
    index = store.open_point(str(point.pk)).index(DISK)
    return sorted(store.chunk_path(digest) for digest in index.referenced())


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


def run_command_with_a_worker(run_worker, *args: str) -> tuple[str, str]:
    """Run a command that waits for its job (`--wait`) while a real worker runs the job here:
    returns (what it printed, its error or "")."""
    out, error = io.StringIO(), []

    def command() -> None:
        try:
            call_command(*args, stdout=out)
        except CommandError as exc:
            error.append(str(exc))
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=command)
    thread.start()

    def finished() -> bool:
        run_worker()
        return not thread.is_alive()

    wait_until(finished, what=f"`{' '.join(args)}` returned", timeout=60)
    thread.join()
    return out.getvalue(), "".join(error)


@pytest.mark.django_db(transaction=True)
def test_vault_repair_wait_lists_a_chunk_that_cannot_be_repaired(make_point, run_worker):
    point = make_point()
    bad = chunk_files(point)[0]
    flip_a_byte(bad)
    verify = runner.enqueue(jobs.VERIFY_KIND, params={"point_ids": [str(point.pk)]})
    run_worker()
    verify.refresh_from_db()
    assert verify.status == JobRun.Status.FAILED and "app-01" in verify.error

    printed, error = run_command_with_a_worker(run_worker, "vault", "repair", "--wait")

    assert "Known damage: 1 point(s); 1 chunk(s) bad in the local store" in printed
    assert f"Cannot be repaired: chunk {bad.name}" in printed
    assert "VMs affected: app-01" in error and healing.NO_GOOD_COPY in error
    point.refresh_from_db()
    assert point.damaged and point.repaired_at is None
    entry = AuditEntry.objects.get(action="vault.repair")
    assert [note["digest"] for note in entry.details["unrepairable"]] == [bad.name]


@pytest.mark.django_db
def test_vault_repair_copies_back_chunks_from_the_vault_corrupt_or_missing(
    make_point, run_worker, tmp_path, django_capture_on_commit_callbacks
):
    use_directory_vault(tmp_path / "vault")
    point = make_point()
    replicate(point)
    corrupt, missing, _ = chunk_files(point)
    originals = {path: path.read_bytes() for path in (corrupt, missing)}
    flip_a_byte(corrupt)
    missing.unlink()
    problems = [str(p) for p in engine.verify_point(local_store(), str(point.pk)).problems]
    healing.mark_damaged(point, problems, healing.LOCAL, digests=[corrupt.name, missing.name])

    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "repair", stdout=io.StringIO())
    run_worker()

    run = JobRun.objects.get(kind=jobs.REPAIR_KIND)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert {path: path.read_bytes() for path in originals} == originals
    point.refresh_from_db()
    assert not point.damaged and point.repaired_at
    assert engine.verify_point(local_store(), str(point.pk)).ok


@pytest.mark.django_db
def test_a_repaired_chunk_clears_only_the_damage_it_caused(make_point):
    point = make_point(vault_status=RecoveryPoint.VaultStatus.REPLICATED)
    whole = chunk_files(point)[0].name
    still_bad = "ab" * 32  # no point holds it: nothing can make it whole
    healing.mark_damaged(point, [f"chunk {whole} fails its SHA-256 check"], healing.LOCAL, digests=[whole])
    healing.mark_damaged(point, [f"chunk {still_bad} is missing"], healing.VAULT, digests=[still_bad])

    assert healing.recheck_damaged() == []  # the vault tier is still damaged
    point.refresh_from_db()
    assert point.damaged and point.damaged_chunks == [{"digest": still_bad, "tier": "vault"}]
    assert point.damage == [f"vault: chunk {still_bad} is missing"]

    healing.mark_intact(point, healing.VAULT)  # a full verification of the vault copy found it whole
    point.refresh_from_db()
    assert not point.damaged and point.repaired_at
    assert AuditEntry.objects.filter(action="point.repaired", target_id=str(point.pk)).count() == 1


@pytest.mark.django_db
def test_pages_show_damaged_repaired_and_pruned_from_the_vault_as_text(make_point, as_admin):
    repaired = make_point(NOW - dt.timedelta(days=2), seed=1)
    digest = chunk_files(repaired)[0].name
    healing.mark_damaged(repaired, [f"chunk {digest} fails its SHA-256 check"], healing.LOCAL, digests=[digest])
    assert [p.pk for p in healing.recheck_damaged([digest])] == [repaired.pk]  # the chunk is whole
    pruned = make_point(NOW - dt.timedelta(days=1), seed=2, vault_status=RecoveryPoint.VaultStatus.PRUNED)
    damaged = make_point(NOW, seed=3)
    healing.mark_damaged(damaged, ["chunk cd… is missing"], healing.LOCAL, digests=["cd" * 32])
    repaired.refresh_from_db()
    damaged.refresh_from_db()

    pages = {
        "vault": as_admin.get("/vault/").content.decode(),
        "vm": as_admin.get(f"/inventory/vms/{damaged.vm_id}/").content.decode(),
        "recovery": as_admin.get(f"/recovery/vms/{damaged.vm_id}/").content.decode(),
    }

    for name, body in pages.items():
        assert f"Repaired {timezone.localtime(repaired.repaired_at):%Y-%m-%d %H:%M}" in body, name
        assert f"Damaged {timezone.localtime(damaged.damaged_at):%Y-%m-%d %H:%M}" in body, name
        assert "local: chunk cd… is missing" in body, name
        assert "Pruned from the vault" in body, name
    assert pruned.pk and "Repair damaged chunks" in pages["vault"]


@pytest.mark.django_db
def test_nightly_maintenance_reconciles_the_store_before_retention(
    make_point, run_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        runs = jobs.enqueue_maintenance()
    run_worker()

    kinds = [run.kind for run in runs]
    assert kinds[:3] == ["vault.reconcile", "vault.prune", "vault.gc"]
    reconcile, prune = (JobRun.objects.get(pk=run.pk) for run in runs[:2])
    assert reconcile.status == prune.status == JobRun.Status.SUCCEEDED
    assert reconcile.finished <= prune.started


@pytest.mark.django_db
def test_vault_reconcile_prints_its_report(make_point):
    point = make_point()
    RecoveryPoint.objects.filter(pk=point.pk).delete()  # its row was never written
    out = io.StringIO()

    call_command("vault", "reconcile", "--dry-run", stdout=out)

    assert f"point {point.pk}" in out.getvalue() and "Dry run, nothing changed" in out.getvalue()
    assert str(point.pk) in local_store().list_points()


@pytest.mark.django_db
def test_verify_says_why_a_vault_it_cannot_use_repaired_nothing(
    make_point, run_worker, tmp_path, django_capture_on_commit_callbacks
):
    root = tmp_path / "vault"
    root.mkdir()
    # An encrypted vault whose key this server does not have (rebuilt, key not entered yet).
    key = engine.parse_key(engine.generate_key())
    engine.RemoteVault(engine.blobs.DirectoryBackend(root), key).open(create=True)
    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": str(root)})
    point = make_point()
    flip_a_byte(chunk_files(point)[0])

    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue(jobs.VERIFY_KIND, params={"point_ids": [str(point.pk)]})
    run_worker()

    run.refresh_from_db()
    assert run.status == JobRun.Status.FAILED, (run.status, run.error, run.traceback)
    assert "VMs affected: app-01" in run.error and "the vault could not be used for repairs" in run.error
    assert "enter its vault key" in run.error
    point.refresh_from_db()
    assert point.damaged


@pytest.mark.django_db
def test_a_restore_that_heals_a_chunk_from_the_vault_marks_the_point_repaired(make_point, tmp_path):
    use_directory_vault(tmp_path / "vault")
    point = make_point()
    replicate(point)
    bad = chunk_files(point)[1]
    original = bad.read_bytes()
    flip_a_byte(bad)
    problems = [str(p) for p in engine.verify_point(local_store(), str(point.pk)).problems]
    healing.mark_damaged(point, problems, healing.LOCAL, digests=[bad.name])

    source = tiered_store()
    engine.restore_disk(source, source.open_point(str(point.pk)).index(DISK), io.BytesIO())
    repaired = healing.note_read_repairs(source, actor="restore")

    assert [p.pk for p in repaired] == [point.pk] and bad.read_bytes() == original
    point.refresh_from_db()
    assert not point.damaged and point.repaired_at
    assert AuditEntry.objects.get(action="point.repaired").actor_name == "restore"


@pytest.mark.django_db
def test_damage_in_a_tier_the_point_has_left_does_not_keep_it_damaged(make_point):
    point = make_point(vault_status=RecoveryPoint.VaultStatus.REPLICATED)
    healing.mark_damaged(point, ["chunk ef… is missing"], healing.LOCAL, digests=["ef" * 32])
    RecoveryPoint.objects.filter(pk=point.pk).update(local=False)  # retention removed the local copy

    healing.mark_intact(point, healing.VAULT)  # the vault copy, all that is left, verified whole

    point.refresh_from_db()
    assert not point.damaged and point.repaired_at and point.damaged_chunks == []


@pytest.mark.django_db
def test_the_vault_page_starts_a_repair_for_an_administrator_only(make_point, as_admin, as_auditor):
    assert as_auditor.post("/vault/start/repair/").status_code == 403

    response = as_admin.post("/vault/start/repair/")

    run = JobRun.objects.get(kind=jobs.REPAIR_KIND)
    assert response.status_code == 302 and str(run.pk) in response["Location"]
    assert run.queue == "vault" and run.created_by.username == "alice"
