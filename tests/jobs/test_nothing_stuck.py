"""No job can be stuck: a queued row whose RQ job is gone is queued again (a bounded number of times,
then errored with the reason), chains survive Redis losing everything, a cancelled or reaped job
releases the jobs waiting on it, and an enqueue Redis refuses is retried, never silently dropped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import django_rq
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job

from jobs import maintenance, runner
from jobs import worker as worker_module
from jobs.actions import cancel_job
from jobs.models import JobRun
from tests.jobs import stuck_kinds  # noqa: F401  (registers the test job kinds)

Status = JobRun.Status
ROOT = Path(__file__).resolve().parents[2]


def rq_status(run: JobRun) -> str | None:
    try:
        return Job.fetch(str(run.pk), connection=django_rq.get_connection("default")).get_status()
    except NoSuchJobError:
        return None


def age(*runs: JobRun, minutes: int = 5) -> None:
    """Stand in for time passing: the rows look older than the reaper's grace."""
    JobRun.objects.filter(pk__in=[run.pk for run in runs]).update(created=timezone.now() - timedelta(minutes=minutes))


def chain_of(count: int, capture) -> list[JobRun]:
    runs: list[JobRun] = []
    with capture(execute=True):
        for _ in range(count):
            runs.append(runner.enqueue("test.noop", after=runs[-1] if runs else None))
    return runs


def chain_of_three_cancelling(position: int, capture, admin) -> list[JobRun]:
    """Three chained jobs, the one at `position` cancelled before any of them runs."""
    runs = chain_of(3, capture)
    with capture(execute=True):
        cancel_job(str(runs[position].pk), admin)
    return runs


def refreshed(*runs: JobRun) -> list[JobRun]:
    for run in runs:
        run.refresh_from_db()
    return list(runs)


def log_text(run: JobRun) -> str:
    return "\n".join(line["msg"] for line in run.log)


@pytest.mark.django_db
def test_a_queued_job_whose_rq_job_was_deleted_is_queued_again_and_runs(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("test.noop")
    Job.fetch(str(run.pk), connection=redis_conn).delete()
    age(run)

    assert maintenance.reap_orphaned_runs() == 0
    assert rq_status(run) == "queued"
    run_worker()

    (run,) = refreshed(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.queue_attempts == 2
    assert "Its queue entry was lost (Redis restarted without it, or it was removed); queued again" in log_text(run)


@pytest.mark.django_db
def test_a_job_whose_queue_entry_keeps_being_lost_is_errored_with_the_reason(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("test.noop")
    age(run)
    for _ in range(maintenance.MAX_QUEUE_ATTEMPTS - 1):
        Job.fetch(str(run.pk), connection=redis_conn).delete()
        assert maintenance.reap_orphaned_runs() == 0
        assert rq_status(run) == "queued"
    Job.fetch(str(run.pk), connection=redis_conn).delete()

    assert maintenance.reap_orphaned_runs() == 1

    (run,) = refreshed(run)
    assert run.status == Status.ERRORED and run.finished
    assert run.error == (
        f"Its queue entry was lost {maintenance.MAX_QUEUE_ATTEMPTS} times (Redis restarted without it, or it was "
        "removed); it was not queued again."
    )
    assert rq_status(run) is None


@pytest.mark.django_db
def test_a_job_younger_than_the_grace_is_left_to_the_commit_that_queues_it(redis_conn):
    run = runner.enqueue("test.noop")  # the test's transaction never commits: no RQ job yet
    maintenance.reap_orphaned_runs()
    (run,) = refreshed(run)
    assert (run.status, run.queue_attempts, rq_status(run)) == (Status.QUEUED, 0, None)

    age(run)
    maintenance.reap_orphaned_runs()
    assert rq_status(run) == "queued"


@pytest.mark.django_db
def test_a_chain_of_three_queued_jobs_runs_in_order_after_redis_lost_everything(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    first, second, third = chain_of(3, django_capture_on_commit_callbacks)
    assert [rq_status(run) for run in (first, second, third)] == ["queued", "deferred", "deferred"]
    redis_conn.flushdb()  # a Redis restarted without its data
    age(first, second, third)

    maintenance.reap_orphaned_runs()

    # Queued again as a chain: the second and third still wait for their predecessor.
    assert [rq_status(run) for run in (first, second, third)] == ["queued", "deferred", "deferred"]
    run_worker()
    first, second, third = refreshed(first, second, third)
    assert [run.status for run in (first, second, third)] == [Status.SUCCEEDED] * 3
    assert first.finished <= second.started and second.finished <= third.started


@pytest.mark.django_db
def test_when_the_head_of_a_chain_is_errored_after_its_attempts_the_rest_run(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    first, second, third = chain_of(3, django_capture_on_commit_callbacks)
    # The head has already been queued as often as it may be, and Redis loses everything once more.
    JobRun.objects.filter(pk=first.pk).update(queue_attempts=maintenance.MAX_QUEUE_ATTEMPTS)
    redis_conn.flushdb()
    age(first, second, third)

    assert maintenance.reap_orphaned_runs() == 1
    assert [rq_status(run) for run in (second, third)] == ["queued", "deferred"]
    run_worker()

    first, second, third = refreshed(first, second, third)
    assert first.status == Status.ERRORED and "it was not queued again" in first.error
    assert [second.status, third.status] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert second.queue_attempts == 1, second.log  # released, not counted as a lost entry of its own


@pytest.mark.django_db
def test_cancelling_the_first_job_of_a_chain_lets_the_other_two_run(
    django_capture_on_commit_callbacks, redis_conn, run_worker, admin
):
    first, second, third = chain_of_three_cancelling(0, django_capture_on_commit_callbacks, admin)

    run_worker()

    first, second, third = refreshed(first, second, third)
    assert first.status == Status.CANCELLED and first.started is None
    assert [second.status, third.status] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert second.finished <= third.started


@pytest.mark.django_db
def test_cancelling_the_middle_job_of_a_chain_makes_the_last_wait_for_the_first(
    django_capture_on_commit_callbacks, redis_conn, run_worker, admin
):
    first, second, third = chain_of_three_cancelling(1, django_capture_on_commit_callbacks, admin)

    # Still one job at a time in this lane: the third now waits for the first.
    (third,) = refreshed(third)
    assert third.after_id == first.pk and rq_status(third) == "deferred"
    run_worker()

    first, second, third = refreshed(first, second, third)
    assert [first.status, second.status, third.status] == [Status.SUCCEEDED, Status.CANCELLED, Status.SUCCEEDED]
    assert first.finished <= third.started


@pytest.mark.django_db
def test_a_job_deferred_on_a_predecessor_that_ended_unnoticed_is_released_by_the_reaper(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    first, second = chain_of(2, django_capture_on_commit_callbacks)
    # The predecessor ended where RQ did not see it (say, a cancel whose Redis call failed).
    JobRun.objects.filter(pk=first.pk).update(status=Status.CANCELLED, finished=timezone.now() - timedelta(minutes=5))
    Job.fetch(str(first.pk), connection=redis_conn).cancel()
    age(first, second)
    assert rq_status(second) == "deferred"

    maintenance.reap_orphaned_runs()
    run_worker()

    (second,) = refreshed(second)
    assert second.status == Status.SUCCEEDED, second.error
    assert second.queue_attempts == 1  # a release is not a lost entry


@pytest.mark.django_db
def test_a_job_enqueued_while_redis_is_unreachable_is_logged_and_queued_by_the_reaper(
    django_capture_on_commit_callbacks, redis_conn, run_worker, monkeypatch, tmp_path
):
    unreachable = redis.Redis(unix_socket_path=str(tmp_path / "no-redis-here.sock"))
    real_get_queue = django_rq.get_queue
    with monkeypatch.context() as patch:
        patch.setattr(django_rq, "get_queue", lambda name, **kw: real_get_queue(name, connection=unreachable, **kw))
        with django_capture_on_commit_callbacks(execute=True):
            run = runner.enqueue("test.noop")  # the commit stands; the queue failure is the row's to tell

    (run,) = refreshed(run)
    assert run.status == Status.QUEUED and rq_status(run) is None
    assert run.queue_error.startswith("ConnectionError: ") and "no-redis-here.sock" in run.queue_error
    assert f"It could not be queued, and will be tried again: {run.queue_error}" in log_text(run)

    maintenance.reap_orphaned_runs()  # no grace needed: the failure is known
    run_worker()

    (run,) = refreshed(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.queue_error == "" and "Queued again after an earlier attempt failed" in log_text(run)


@pytest.mark.django_db
def test_a_job_redis_keeps_refusing_is_errored_with_the_reason_within_two_reaper_passes(
    django_capture_on_commit_callbacks, redis_conn, run_worker
):
    # A Redis out of memory (or with a full disk under its append-only file) refuses writes, not reads.
    redis_conn.config_set("maxmemory", "1")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = runner.enqueue("test.noop")
        assert maintenance.reap_orphaned_runs() == 0
        assert maintenance.reap_orphaned_runs() == 1
    finally:
        redis_conn.config_set("maxmemory", "0")

    (run,) = refreshed(run)
    assert run.status == Status.ERRORED
    assert run.error.startswith(f"It could not be queued ({maintenance.MAX_QUEUE_ATTEMPTS} attempts): ")
    assert "OutOfMemoryError" in run.error and "maxmemory" in run.error


@pytest.mark.django_db(transaction=True)
def test_a_running_job_whose_worker_was_killed_releases_the_job_waiting_on_it(redis_conn, run_worker):
    first = runner.enqueue("test.kill_own_worker")
    second = runner.enqueue("test.noop", after=first)
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}:@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    script = (
        "import django; django.setup()\n"
        "import django_rq, tests.jobs.stuck_kinds\n"
        "from rq import Worker\n"
        "Worker([django_rq.get_queue('default')], connection=django_rq.get_connection('default')).work(burst=True)\n"
    )
    worker = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert worker.returncode == -9, worker.stderr.decode()
    first, second = refreshed(first, second)
    assert first.status == Status.RUNNING and rq_status(second) == "deferred"

    assert maintenance.reap_orphaned_runs() == 1
    run_worker()

    first, second = refreshed(first, second)
    assert first.status == Status.ERRORED and first.error == "The worker running this job was stopped."
    assert second.status == Status.SUCCEEDED, second.error
    assert second.started >= first.finished


@pytest.mark.django_db(transaction=True)
def test_a_starting_worker_queues_every_start_up_job_and_skips_an_unknown_kind(redis_conn, monkeypatch):
    from rq import SimpleWorker

    assert {"protection.cleanup_snapshots", "vault.reconcile"} <= set(worker_module.STARTUP_JOB_KINDS)
    monkeypatch.setattr(worker_module, "STARTUP_JOB_KINDS", ("no.such.kind", "test.noop"))

    class InProcessCleaningWorker(SimpleWorker, worker_module.CleaningWorker):
        """The production start-up path (CleaningWorker.work), running jobs in this process (SimpleWorker)."""

    queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
    InProcessCleaningWorker(queues, connection=redis_conn).work(burst=True, with_scheduler=False)

    run = JobRun.objects.get(kind="test.noop")
    assert run.status == Status.SUCCEEDED, run.error
    # Started again: a new one is queued, but not a second while that one has not run.
    log = logging.getLogger(__name__)
    assert worker_module.queue_startup_jobs(log) == ["test.noop"]
    assert worker_module.queue_startup_jobs(log) == []


@pytest.mark.django_db(transaction=True)
def test_a_job_that_failed_before_it_could_start_is_queued_again_with_the_error_that_stopped_it(
    redis_conn, run_worker, monkeypatch
):
    run = runner.enqueue("test.noop")

    def broken_connection(run_id: str) -> str:  # what a worker with a dead database connection meets
        raise RuntimeError("consuming input failed: server closed the connection unexpectedly")

    monkeypatch.setattr(runner, "execute", broken_connection)
    run_worker()
    monkeypatch.undo()
    (run,) = refreshed(run)
    assert run.status == Status.QUEUED and rq_status(run) == "failed"

    age(run)
    assert maintenance.reap_orphaned_runs() == 0
    run_worker()

    (run,) = refreshed(run)
    assert run.status == Status.SUCCEEDED, run.error
    assert "It failed before it could start (RuntimeError: consuming input failed" in log_text(run)


def left_by_a_killed_worker(run: JobRun, redis_conn) -> Job:
    """The RQ job of `run` as a worker SIGKILLed mid-job leaves it: started, its execution listed on
    the job and in the started registry, the execution's own record expired (with the last heartbeat,
    before the lists)."""
    job = Job.fetch(str(run.pk), connection=redis_conn)
    with redis_conn.pipeline() as pipeline:
        job.set_status("started", pipeline=pipeline)
        execution = Execution.create(job, ttl=60, pipeline=pipeline, worker_name="machine-a:4242")
        job.started_job_registry.add_execution(execution, pipeline=pipeline, ttl=60)
        pipeline.execute()
    redis_conn.delete(execution.key)
    return job


@pytest.mark.django_db
def test_a_job_whose_killed_worker_s_execution_record_expired_is_queued_again(
    django_capture_on_commit_callbacks, redis_conn
) -> None:
    # Queueing the row again deletes the old RQ job, which RQ cannot do while it lists an execution
    # it cannot fetch.
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("test.noop")
    job = left_by_a_killed_worker(run, redis_conn)

    assert runner.put_on_queue(run, counted=False)

    run.refresh_from_db()
    assert run.queue_error == "" and rq_status(run) == "queued"
    assert redis_conn.zcard(job.started_job_registry.key) == 0
    assert redis_conn.zcard(job.execution_registry.key) == 0


@pytest.mark.django_db
def test_cancelling_a_queued_row_whose_killed_worker_s_execution_record_expired_cancels_it(
    django_capture_on_commit_callbacks, redis_conn, admin
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = runner.enqueue("test.noop")
    job = left_by_a_killed_worker(run, redis_conn)

    with django_capture_on_commit_callbacks(execute=True):
        cancel_job(str(run.pk), admin)

    (run,) = refreshed(run)
    assert run.status == Status.CANCELLED
    assert rq_status(run) == "canceled"
    assert redis_conn.zcard(job.started_job_registry.key) == 0
