"""The scheduler: one backup per VM per slot even with two schedulers, missed slots run once,
paused groups do nothing, parallelism and the backup window hold."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
from django.db import connection
from django.utils import timezone
from rq.registry import DeferredJobRegistry

from jobs.models import JobRun
from protection import actions
from protection.models import Policy
from protection.scheduling import BACKUP_KIND, tick
from tests.factories.protection import protect_folders
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

ROOT = Path(__file__).resolve().parents[2]


def make_group(vm_count: int = 3, **policy):
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    for n in range(vm_count):
        create_test_vm(folders["Prod"], f"vm-{n}")
    return protect_folders("Prod", [folders["Prod"]], **policy)


def make_due(group, days: int = 3) -> None:
    Policy.objects.filter(group=group).update(last_slot=timezone.now() - timedelta(days=days))


def backups() -> int:
    return JobRun.objects.filter(kind=BACKUP_KIND).count()


@pytest.mark.django_db
def test_a_new_group_does_not_fire_for_a_slot_already_past(redis_conn, django_capture_on_commit_callbacks):
    make_group()
    with django_capture_on_commit_callbacks(execute=True):
        assert tick() == 0


@pytest.mark.django_db
def test_a_due_slot_queues_one_backup_per_vm_once(redis_conn, django_capture_on_commit_callbacks):
    group = make_group(vm_count=3)
    make_due(group)
    with django_capture_on_commit_callbacks(execute=True):
        assert tick() == 3
        assert tick() == 0  # the same slot again: nothing
    assert backups() == 3
    assert {run.target_label for run in JobRun.objects.all()} == {"vm-0", "vm-1", "vm-2"}


@pytest.mark.django_db
def test_a_scheduler_that_was_down_runs_the_missed_slots_once(redis_conn, django_capture_on_commit_callbacks):
    group = make_group(vm_count=2, schedule="every 1h")
    make_due(group, days=3)  # 72 slots missed
    with django_capture_on_commit_callbacks(execute=True):
        assert tick() == 2
    policy = Policy.objects.get(group=group)
    assert policy.last_slot == policy.parsed_schedule().latest_slot(timezone.now())


@pytest.mark.django_db
def test_a_paused_group_queues_nothing(redis_conn, django_capture_on_commit_callbacks, admin):
    group = make_group()
    make_due(group)
    actions.set_paused(admin, group, True)
    make_due(group)
    with django_capture_on_commit_callbacks(execute=True):
        assert tick() == 0
    assert backups() == 0


@pytest.mark.django_db
def test_parallelism_chains_the_jobs(redis_conn, django_capture_on_commit_callbacks):
    group = make_group(vm_count=5, parallelism=2)
    make_due(group)
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    queue = django_rq.get_queue("backup")
    assert queue.count == 2  # two may start; the other three wait for one of them to end
    assert len(DeferredJobRegistry(queue=queue).get_job_ids()) == 3


@pytest.mark.django_db
def test_back_up_now_does_not_queue_a_vm_twice(redis_conn, django_capture_on_commit_callbacks, admin):
    group = make_group(vm_count=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert len(actions.backup_now(admin, group=group)) == 2
        assert actions.backup_now(admin, group=group) == []
    assert backups() == 2


@pytest.mark.django_db
def test_no_vm_starts_after_the_backup_window(redis_conn, django_capture_on_commit_callbacks, run_worker):
    group = make_group(vm_count=1, window_hours=1)
    Policy.objects.filter(group=group).update(last_slot=timezone.now() - timedelta(days=3))
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = actions.backup_now(None, group=group)
    JobRun.objects.filter(pk=run.pk).update(
        params={**run.params, "window_end": (timezone.now() - timedelta(minutes=1)).isoformat()}
    )
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.CANCELLED
    assert "backup window closed" in run.log[0]["msg"]


@pytest.mark.django_db(transaction=True)
def test_two_scheduler_processes_queue_exactly_one_backup_per_vm_per_slot(redis_conn):
    if connection.vendor != "postgresql":
        pytest.skip("two processes need a shared database server")
    group = make_group(vm_count=4)
    make_due(group)
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}:@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    code = "from protection.scheduling import tick; print(tick())"
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sorted(int(out.strip().splitlines()[-1]) for out, _ in outputs) == [0, 4]
    assert backups() == 4
