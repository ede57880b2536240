"""A point retention pruned from the vault stays out of it: "pruned from the vault", never queued for
replication again (so the 10-minute catch-up does not upload it every night for the next prune to
remove), and free to leave this server when local retention says so."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from jobs.models import JobRun
from tests.factories.protection import POLICY, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.vault.pointlab import point_with_row, small_image
from vault import actions
from vault.jobs import enqueue_lagging_replications
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store

pytestmark = pytest.mark.django_db
NOW = timezone.now()
PRUNED = RecoveryPoint.VaultStatus.PRUNED
# Keep both points on this server for two weeks, but only the newest day's point in the vault.
ONE_DAY_IN_THE_VAULT = {**POLICY, "vault_daily": 1, "vault_weekly": 0, "vault_monthly": 0, "vault_yearly": 0}


@pytest.fixture
def vault_dir(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    root = tmp_path / "vault"
    root.mkdir()
    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": str(root)})
    return root


@pytest.fixture
def vm_and_group(vault_dir):
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "app-01")
    return vm, protect_vms("Prod", [vm], ONE_DAY_IN_THE_VAULT)


def replicate(point: RecoveryPoint, run_worker, capture) -> None:
    with capture(execute=True):
        actions.enqueue_replication(point)
    run_worker()
    point.refresh_from_db()
    assert point.vault_status == RecoveryPoint.VaultStatus.REPLICATED


def replication_jobs_for(point: RecoveryPoint) -> int:
    runs = JobRun.objects.filter(kind=actions.REPLICATE_KIND)
    return sum(str(point.pk) in run.params.get("point_ids", []) for run in runs)


@pytest.fixture
def pruned_from_the_vault(vm_and_group, vault_dir, tmp_path, run_worker, django_capture_on_commit_callbacks):
    """Two points, both replicated; the vault's retention keeps only the newer one there."""
    vm, group = vm_and_group
    older = point_with_row(small_image(tmp_path, 1), vm, group, NOW - dt.timedelta(days=1))
    newer = point_with_row(small_image(tmp_path, 2), vm, group, NOW)
    for point in (older, newer):
        replicate(point, run_worker, django_capture_on_commit_callbacks)
    plan = actions.plan_prune()
    assert [(item.point.pk, item.tier) for item in plan.remove] == [(older.pk, "vault")]
    done, problems = actions.apply_prune(plan)
    assert len(done) == 1 and not problems
    older.refresh_from_db()
    return older


def test_a_point_pruned_from_the_vault_but_still_local_is_marked_pruned(pruned_from_the_vault, vault_dir):
    point = pruned_from_the_vault

    assert point.vault_status == PRUNED and point.get_vault_status_display() == "Pruned from the vault"
    assert point.local and str(point.pk) in local_store().list_points()
    assert not [blob for blob in (vault_dir / "points" / str(point.pk)).rglob("*") if blob.is_file()]


def test_the_catch_up_never_queues_a_pruned_point_however_often_it_runs(
    pruned_from_the_vault, run_worker, django_capture_on_commit_callbacks
):
    point = pruned_from_the_vault
    jobs_before = replication_jobs_for(point)

    for _night in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert enqueue_lagging_replications() == 0
        run_worker()

    assert replication_jobs_for(point) == jobs_before
    assert point.pk not in {p.pk for p in actions.replication_backlog()}
    assert actions.enqueue_replication(point) is None
    point.refresh_from_db()
    assert point.vault_status == PRUNED


def test_moving_the_vault_keeps_a_pruned_point_pruned(pruned_from_the_vault, tmp_path):
    point = pruned_from_the_vault
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = VaultSettings.current()
    config.directory = str(elsewhere)

    actions.save_settings(None, config)

    point.refresh_from_db()
    assert point.vault_status == PRUNED
    newer = RecoveryPoint.objects.exclude(pk=point.pk).get()
    assert newer.vault_status == RecoveryPoint.VaultStatus.NOT_REPLICATED  # copied again to the new place
    assert [p.pk for p in actions.replication_backlog()] == [newer.pk]


def test_a_pruned_point_may_leave_this_server_without_waiting_for_a_vault_copy(vm_and_group, tmp_path):
    vm, group = vm_and_group
    group.policy.local_days, group.policy.local_count = None, 1
    group.policy.save()
    older = point_with_row(small_image(tmp_path, 1), vm, group, NOW - dt.timedelta(days=1), vault_status=PRUNED)
    point_with_row(small_image(tmp_path, 2), vm, group, NOW, vault_status=RecoveryPoint.VaultStatus.REPLICATED)

    plan = actions.plan_prune()

    assert [(item.point.pk, item.tier) for item in plan.remove] == [(older.pk, "local")]
    assert plan.held == []


def test_vault_gfs_planning_ignores_pruned_points(vm_and_group, tmp_path):
    vm, group = vm_and_group
    for days in (3, 2):
        point_with_row(small_image(tmp_path, days), vm, group, NOW - dt.timedelta(days=days), vault_status=PRUNED)
    point_with_row(small_image(tmp_path, 9), vm, group, NOW, vault_status=RecoveryPoint.VaultStatus.REPLICATED)

    plan = actions.plan_prune()

    assert [item for item in plan.remove + plan.held if item.tier == "vault"] == []
