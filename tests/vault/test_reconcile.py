"""The reconciler brings the local store and the RecoveryPoint rows back into agreement: store points
without a row are adopted or removed (or left while their backup may still write the row), rows whose
point vanished are corrected, and every change is audited. Real store points, real rows."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import JobRun
from jobs.runner import enqueue
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.vault.pointlab import (
    DISK_KEY,
    backup_meta,
    old_style_meta,
    point_with_row,
    publish_store_point,
    small_image,
)
from vault import engine
from vault.models import RecoveryPoint, RecoveryPointDisk
from vault.reconcile import RECONCILE_KIND, reconcile
from vault.storage import local_store

pytestmark = pytest.mark.django_db
CREATED = timezone.now() - dt.timedelta(days=2)
# Points published by these tests are seconds old: reconcile as if an hour had passed, unless the
# test is about a point published just now.
LATER = timezone.now() + dt.timedelta(hours=1)


@pytest.fixture
def lab(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "app-01")
    return vm, protect_vms("Prod", [vm]), tmp_path


def orphan_with_full_meta(lab, seed: int = 1, job: JobRun | None = None) -> str:
    """A point a backup published before its worker died: in the store, with no row."""
    vm, group, tmp_path = lab
    job_id = job.pk if job else None
    return publish_store_point(
        small_image(tmp_path, seed), lambda result: backup_meta(vm, group, result, created=CREATED, job=job_id)
    )


def audit_actions() -> list[str]:
    return sorted(AuditEntry.objects.filter(actor_name="reconciler").values_list("action", flat=True))


def test_a_store_point_with_a_full_manifest_and_no_row_is_adopted_with_its_disks_and_an_audit_entry(lab):
    vm, group, _ = lab
    point_id = orphan_with_full_meta(lab)

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.adopted] == [point_id]
    row = RecoveryPoint.objects.get(pk=point_id)
    assert (row.vm, row.group, row.local, row.consistency) == (vm, group, True, "crash")
    assert row.created == CREATED and row.config["name"] == "app-01"
    assert row.logical_bytes == engine.Store(local_store().root).open_point(point_id).meta["logical_bytes"] > 0
    disk = RecoveryPointDisk.objects.get(point=row)
    assert (disk.key, disk.label, disk.read_path) == (DISK_KEY, "Hard disk 1", "full") and disk.chunks == 2
    assert audit_actions() == ["point.adopted"]
    assert AuditEntry.objects.get(action="point.adopted").target_id == point_id
    assert str(point_id) in local_store().list_points()  # adopted, not moved


def test_a_store_point_written_before_manifests_described_the_backup_is_removed_from_the_store(lab):
    vm, group, tmp_path = lab
    point_id = publish_store_point(small_image(tmp_path, 1), lambda result: old_style_meta(vm, CREATED))

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.removed_from_store] == [point_id]
    assert "lacks what a row needs" in report.removed_from_store[0].reason
    assert point_id not in local_store().list_points()
    assert not RecoveryPoint.objects.exists()
    assert audit_actions() == ["point.orphan_removed"]


def test_an_orphan_whose_vm_is_no_longer_known_is_removed(lab):
    vm, group, _ = lab
    point_id = orphan_with_full_meta(lab)
    vm.instance_uuid = "another-vm-now"  # the id names another VM than the one backed up
    vm.save()

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.removed_from_store] == [point_id]
    assert "no longer in the inventory" in report.removed_from_store[0].reason
    assert point_id not in local_store().list_points()


def test_a_store_point_whose_backup_job_is_still_running_is_left_alone(lab):
    job = JobRun.objects.create(kind="protection.backup", title="Back up app-01", status=JobRun.Status.RUNNING)
    point_id = orphan_with_full_meta(lab, job=job)

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.left_for_later] == [point_id]
    assert "still running" in report.left_for_later[0].reason
    assert point_id in local_store().list_points() and not RecoveryPoint.objects.exists()
    assert audit_actions() == []


def test_a_store_point_published_a_moment_ago_is_left_for_a_later_run(lab):
    vm, group, tmp_path = lab
    point_id = publish_store_point(small_image(tmp_path, 1), lambda result: old_style_meta(vm, CREATED))

    report = reconcile()  # now: the point is seconds old, its backup may be writing the row

    assert [f.point_id for f in report.left_for_later] == [point_id]
    assert point_id in local_store().list_points()


def test_a_row_whose_store_point_vanished_and_is_not_in_the_vault_is_deleted(lab):
    vm, group, tmp_path = lab
    point = point_with_row(small_image(tmp_path, 1), vm, group, CREATED)
    shutil.rmtree(local_store().points_dir / str(point.pk))  # lost behind the product's back

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.rows_removed] == [str(point.pk)]
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
    assert audit_actions() == ["point.row_removed"]


def test_a_row_whose_store_point_vanished_but_is_in_the_vault_is_marked_not_local(lab):
    vm, group, tmp_path = lab
    point = point_with_row(small_image(tmp_path, 1), vm, group, CREATED, vault_status="replicated")
    shutil.rmtree(local_store().points_dir / str(point.pk))

    report = reconcile(now=LATER)

    assert [f.point_id for f in report.rows_marked_not_local] == [str(point.pk)]
    point.refresh_from_db()
    assert not point.local and point.vault_status == "replicated"
    assert audit_actions() == ["point.local_missing"]


def test_a_row_whose_store_point_cannot_be_read_is_marked_damaged_not_deleted(lab):
    vm, group, tmp_path = lab
    point = point_with_row(small_image(tmp_path, 1), vm, group, CREATED)
    (local_store().points_dir / str(point.pk) / "manifest.json").write_text("{not json")

    report = reconcile(now=LATER)
    again = reconcile(now=LATER)

    point.refresh_from_db()
    assert point.local and point.damaged and point.damaged_at is not None
    assert point.damage[0].startswith("local: the store cannot read this point")
    assert [f.point_id for f in report.damaged] == [str(point.pk)] and again.damaged == []
    assert audit_actions() == ["point.damaged"]


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(lab):
    vm, group, tmp_path = lab
    adoptable = orphan_with_full_meta(lab, seed=1)
    old = publish_store_point(small_image(tmp_path, 2), lambda result: old_style_meta(vm, CREATED))
    vanished = point_with_row(small_image(tmp_path, 3), vm, group, CREATED)
    shutil.rmtree(local_store().points_dir / str(vanished.pk))

    report = reconcile(dry_run=True, now=LATER)

    assert report.dry_run
    assert [f.point_id for f in report.adopted] == [adoptable]
    assert [f.point_id for f in report.removed_from_store] == [old]
    assert [f.point_id for f in report.rows_removed] == [str(vanished.pk)]
    lines = report.lines()
    assert any(line.startswith(f"Would adopt point {adoptable}") for line in lines)
    assert lines[-1].startswith("Dry run, nothing changed: 1 point to adopt, 1 store point to remove, 1 row to delete")
    assert sorted(local_store().list_points()) == sorted([adoptable, old])
    assert list(RecoveryPoint.objects.values_list("pk", flat=True)) == [vanished.pk]
    assert audit_actions() == []


def test_a_second_run_finds_the_store_and_the_database_in_agreement(lab):
    vm, group, tmp_path = lab
    orphan_with_full_meta(lab)
    point_with_row(small_image(tmp_path, 2), vm, group, CREATED)
    reconcile(now=LATER)

    report = reconcile(now=LATER)

    assert report.lines() == ["The store and the database agree: nothing to do."]


def test_the_reconcile_job_runs_on_a_real_worker_and_logs_each_line(
    lab, run_worker, django_capture_on_commit_callbacks
):
    vm, group, tmp_path = lab
    point = point_with_row(small_image(tmp_path, 1), vm, group, CREATED)
    shutil.rmtree(local_store().points_dir / str(point.pk))

    with django_capture_on_commit_callbacks(execute=True):
        run = enqueue(RECONCILE_KIND)
    run_worker()

    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    messages = [line["msg"] for line in run.log]
    assert messages[0].startswith(f"Deleted the row of point {point.pk} of app-01")
    assert messages[-1] == "Reconciled: 1 row deleted."
    assert [f["point_id"] for f in run.result["rows_removed"]] == [str(point.pk)]
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
