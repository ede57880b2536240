"""Following a job from a management command: the command waits, printing the job's log."""

from __future__ import annotations

import time

from django.core.management.base import CommandError, OutputWrapper

from jobs.models import JobRun


def wait_for_job(stdout: OutputWrapper, run: JobRun, *, poll: float = 0.5) -> JobRun:
    """Follow a job until it is final, printing its log; a job that did not succeed is an error."""
    printed = 0
    while True:
        run.refresh_from_db()
        for line in run.log[printed:]:
            stdout.write(f"  {line['msg']}")
        printed = len(run.log)
        if run.is_final:
            break
        time.sleep(poll)
    if run.status != JobRun.Status.SUCCEEDED:
        raise CommandError(f"{run.title} {run.status}: {run.error}")
    return run
