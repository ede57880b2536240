"""The orphan reaper tells this machine's dead workers from other machines' by MACHINE_NAME, not by the
host name: machines sharing a host name (containers, clones) must not error each other's running jobs
because a process id of the same number is gone here."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from jobs import maintenance, runner
from jobs.models import JobRun
from tests.jobs import stuck_kinds  # noqa: F401  (registers test.noop)

Status = JobRun.Status


def a_dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def running_row(worker: str, *, started_minutes_ago: float = 0.0) -> JobRun:
    return JobRun.objects.create(
        kind="test.noop",
        title="a job",
        queue="default",
        status=Status.RUNNING,
        started=timezone.now() - timedelta(minutes=started_minutes_ago),
        worker=worker,
    )


@pytest.mark.django_db
@override_settings(MACHINE_NAME="machine-b")
def test_a_running_job_of_another_machine_is_left_to_rqs_registry_even_if_its_pid_is_dead_here() -> None:
    other = running_row(f"machine-a:{a_dead_pid()}")

    maintenance.reap_orphaned_runs()

    other.refresh_from_db()
    assert other.status == Status.RUNNING


@pytest.mark.django_db
@override_settings(MACHINE_NAME="machine-b")
def test_a_running_job_whose_process_on_this_machine_is_gone_is_errored_at_once() -> None:
    mine = running_row(f"machine-b:{a_dead_pid()}")

    assert maintenance.reap_orphaned_runs() == 1

    mine.refresh_from_db()
    assert (mine.status, mine.error) == (Status.ERRORED, "The worker running this job was stopped.")


@pytest.mark.django_db
@override_settings(MACHINE_NAME="machine-b")
def test_another_machines_job_is_errored_once_rq_no_longer_lists_it_after_the_grace() -> None:
    other = running_row(f"machine-a:{a_dead_pid()}", started_minutes_ago=3)

    assert maintenance.reap_orphaned_runs() == 1

    other.refresh_from_db()
    assert (other.status, other.error) == (Status.ERRORED, "The worker running this job stopped before it finished.")


@pytest.mark.django_db
@override_settings(MACHINE_NAME="machine-b")
def test_the_runner_records_the_machine_name_and_its_process() -> None:
    run = JobRun.objects.create(kind="test.noop", title="a job", queue="default")
    runner.execute(str(run.pk))

    run.refresh_from_db()
    assert run.worker == f"machine-b:{os.getpid()}"
