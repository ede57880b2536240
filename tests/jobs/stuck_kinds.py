"""Job kinds for the "nothing stuck" tests: a job that does nothing, and one that kills its own worker."""

from __future__ import annotations

import os
import signal

from jobs.registry import job_kind
from jobs.runner import JobContext


@job_kind("test.noop", title="Test: does nothing")
def does_nothing(ctx: JobContext) -> dict:
    return {"ran": True}


@job_kind("test.kill_own_worker", title="Test: its worker dies under it")
def kills_its_worker(ctx: JobContext) -> None:
    # Run in RQ's work horse: kill the worker process, then the horse, as a crash or an OOM kill would.
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


@job_kind("test.database_session", title="Test: which database session runs it")
def reports_its_database_session(ctx: JobContext) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return {"backend_pid": cursor.fetchone()[0]}
