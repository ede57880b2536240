from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import runner
from jobs.actions import cancel_job
from jobs.models import JobRun
from tests.jobs import sample_jobs  # noqa: F401  (registers the test job kinds)

Status = JobRun.Status
pytestmark = pytest.mark.django_db


def enqueue(django_capture_on_commit_callbacks, kind: str, **params) -> JobRun:
    with django_capture_on_commit_callbacks(execute=True):
        return runner.enqueue(kind, params=params)


@pytest.mark.smoke
def test_it_runs_a_job_through_real_redis_and_updates_its_row(
    django_capture_on_commit_callbacks, redis_conn, run_worker, admin
):
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("system.check", user=admin)
    # The RQ job id is the row's UUID, and nothing is enqueued before the commit.
    assert redis_conn.exists(f"rq:job:{run.pk}")
    assert JobRun.objects.get(pk=run.pk).status == Status.QUEUED

    run_worker()

    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    assert (run.progress_done, run.progress_total) == (3, 3)
    assert run.started and run.finished and run.finished >= run.started
    assert [line["msg"].split(" ")[0] for line in run.log] == ["Database", "Redis", "Data"]
    assert run.created_by == admin
    assert run.result["free_bytes"] > 0


def test_nothing_is_enqueued_when_the_transaction_rolls_back(django_capture_on_commit_callbacks, redis_conn):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        run = runner.enqueue("system.check")
        raise RuntimeError("the caller's change failed")
    assert not JobRun.objects.filter(pk=run.pk).exists()
    assert not redis_conn.exists(f"rq:job:{run.pk}")


def test_an_expected_failure_is_failed_with_its_message(django_capture_on_commit_callbacks, run_worker):
    run = enqueue(django_capture_on_commit_callbacks, "test.fail", reason="The VM no longer exists.")
    run_worker()
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.error == "The VM no longer exists."
    assert run.traceback == ""
    assert run.log[-1] == {"t": run.log[-1]["t"], "level": "error", "msg": "The VM no longer exists."}


def test_an_unexpected_exception_is_errored_with_its_traceback(django_capture_on_commit_callbacks, run_worker):
    run = enqueue(django_capture_on_commit_callbacks, "test.crash")
    run_worker()
    run.refresh_from_db()
    assert run.status == Status.ERRORED
    assert run.error == "ZeroDivisionError: division by zero in the handler"
    assert "Traceback" in run.traceback and "crashes" in run.traceback


def test_a_queued_job_cancelled_never_runs(django_capture_on_commit_callbacks, run_worker, admin):
    run = enqueue(django_capture_on_commit_callbacks, "test.crash")
    with django_capture_on_commit_callbacks(execute=True):
        message = cancel_job(str(run.pk), admin)
    assert "cancelled before it started" in message
    run_worker()
    run.refresh_from_db()
    assert run.status == Status.CANCELLED and run.started is None


def test_a_running_job_stops_at_its_next_checkpoint(django_capture_on_commit_callbacks, run_worker, monkeypatch):
    monkeypatch.setattr(runner, "CANCEL_CHECK_INTERVAL", 0)
    run = enqueue(django_capture_on_commit_callbacks, "test.cancel_midway", units=50)
    run_worker()
    run.refresh_from_db()
    assert run.status == Status.CANCELLED
    assert run.progress_done == 2


def test_cancelling_a_finished_job_changes_nothing(admin):
    run = JobRun.objects.create(kind="system.check", title="System check", status=Status.SUCCEEDED)
    assert "already ended" in cancel_job(str(run.pk), admin)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED


def test_a_run_whose_worker_died_is_marked_errored_but_live_ones_are_not(
    django_capture_on_commit_callbacks, run_worker
):
    started = timezone.now() - timedelta(minutes=10)
    orphan = JobRun.objects.create(kind="system.check", title="x", status=Status.RUNNING, started=started)
    # This job runs the reaper from inside a real worker, so its own row is genuinely alive in RQ.
    live = enqueue(django_capture_on_commit_callbacks, "test.reap_while_running")
    run_worker()
    orphan.refresh_from_db()
    live.refresh_from_db()
    assert orphan.status == Status.ERRORED and "worker" in orphan.error
    assert live.status == Status.SUCCEEDED
    assert live.result == {"reaped": 1, "own_status_during_reap": "running"}
