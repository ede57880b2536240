"""A worker's jobs survive a database that dropped their connection (a restart, a killed session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from jobs import runner
from jobs.models import JobRun
from tests.jobs import stuck_kinds  # noqa: F401  (registers the test job kinds)

ROOT = Path(__file__).resolve().parents[2]
Status = JobRun.Status
pytestmark = pytest.mark.django_db(transaction=True)


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _terminate_session(pid: int) -> None:
    """What a database restart does to one session: the server ends it under its client."""
    with psycopg.connect(_database_url().replace("postgres://", "postgresql://"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_each_job_of_a_forking_worker_has_a_database_session_of_its_own(redis_conn):
    # The worker's start-up housekeeping opens a connection in the parent; a work horse that inherited
    # it would share one session with every other horse (and die with it after a database restart).
    runs = [runner.enqueue("test.database_session") for _ in range(2)]
    script = (
        "import django; django.setup()\n"
        "import django_rq, tests.jobs.stuck_kinds\n"
        "from jobs.worker import CleaningWorker\n"
        "CleaningWorker([django_rq.get_queue('default')], connection=django_rq.get_connection('default'))"
        ".work(burst=True)\n"
    )
    env = {**os.environ, "DATABASE_URL": _database_url()}
    worker = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]

    done = [JobRun.objects.get(pk=run.pk) for run in runs]
    assert [run.status for run in done] == [Status.SUCCEEDED, Status.SUCCEEDED], [run.error for run in done]
    assert done[0].result["backend_pid"] != done[1].result["backend_pid"]


def test_a_job_after_the_database_ended_the_workers_session_connects_afresh_and_runs(redis_conn, run_worker):
    with connection.cursor() as cursor:  # the session this process (and so an in-process worker) holds
        cursor.execute("SELECT pg_backend_pid()")
        session = cursor.fetchone()[0]
    run = runner.enqueue("test.noop")  # no transaction around it: queued at once
    _terminate_session(session)

    run_worker()

    run = JobRun.objects.get(pk=run.pk)
    assert run.status == Status.SUCCEEDED, run.error
