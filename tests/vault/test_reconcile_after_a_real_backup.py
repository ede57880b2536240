"""A real backup (simulator, real RQ worker) whose row is lost after its point was published is
adopted by the reconciler with the same row and disk rows the backup wrote: the manifest a backup
commits and what the reconciler reads agree."""

from __future__ import annotations

import datetime as dt

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection import actions
from tests.factories.protection import protect_simulator
from tests.factories.simulator import prod_spec
from tests.vault import CS, build_image
from vault.models import RecoveryPoint, RecoveryPointDisk
from vault.reconcile import reconcile
from vault.storage import local_store

pytestmark = pytest.mark.django_db
SPEC = prod_spec({"name": "app-01", "disks_mb": [16], "instance_uuid": "50000000-0000-0000-0000-0000000ac001"})
# Row fields a reconciler cannot know from the store, or that are the point's own id.
NOT_IN_THE_MANIFEST = {"id", "duration_seconds"}


def disk_rows(point_id) -> list[dict]:
    return [
        {k: v for k, v in model_to_dict(disk).items() if k not in {"id", "point"}}
        for disk in RecoveryPointDisk.objects.filter(point_id=point_id)
    ]


def test_a_backup_whose_row_was_lost_is_adopted_with_the_row_it_would_have_written(
    vcsim_factory, settings, tmp_path, run_worker, django_capture_on_commit_callbacks
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(SPEC, tls=True)
    build_image(tmp_path / "disk.raw", [("random", CS), ("text", 2 * CS)], seed=7)
    sim.upload_disk_image("app-01", 0, tmp_path / "disk.raw")
    protect_simulator(sim, parallelism=1, replicate=False)
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = actions.backup_now(None, vm=VirtualMachine.objects.get(name="app-01"))
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    written = RecoveryPoint.objects.get()
    row_before = {k: v for k, v in model_to_dict(written).items() if k not in NOT_IN_THE_MANIFEST}
    point_id = written.pk
    disks_before = disk_rows(point_id)
    written.delete()  # as if the worker had died between publishing the point and writing its row

    report = reconcile(now=timezone.now() + dt.timedelta(hours=1))

    assert [f.point_id for f in report.adopted] == [str(point_id)], report.lines()
    adopted = RecoveryPoint.objects.get(pk=point_id)
    assert {k: v for k, v in model_to_dict(adopted).items() if k not in NOT_IN_THE_MANIFEST} == row_before
    assert disk_rows(adopted.pk) == disks_before and len(disks_before) == 1
    assert str(adopted.pk) in local_store().list_points()
