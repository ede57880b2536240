"""Job kinds that exist only for tests: a failure, a crash, and a job that waits to be cancelled."""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from jobs.maintenance import reap_orphaned_runs
from jobs.models import JobRun
from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed


@job_kind("test.fail", title="Test: fails")
def fails(ctx: JobContext, reason: str) -> None:
    ctx.log("about to fail")
    raise JobFailed(reason)


@job_kind("test.crash", title="Test: crashes")
def crashes(ctx: JobContext) -> None:
    raise ZeroDivisionError("division by zero in the handler")


@job_kind("test.cancel_midway", title="Test: cancelled while running")
def cancelled_midway(ctx: JobContext, units: int) -> None:
    ctx.set_total(units, "items")
    for done in range(units):
        if done == 2:
            # Stands in for a user pressing Cancel while the job runs.
            JobRun.objects.filter(pk=ctx.run.pk).update(cancel_requested=True)
        ctx.check_cancelled()
        ctx.progress(done + 1)
        time.sleep(0.05)


@job_kind("test.reap_while_running", title="Test: runs the reaper while alive")
def reap_while_running(ctx: JobContext) -> dict:
    # Look old enough to be reaped if the reaper wrongly thought this worker was gone.
    JobRun.objects.filter(pk=ctx.run.pk).update(started=timezone.now() - timedelta(minutes=10))
    reaped = reap_orphaned_runs()
    return {"reaped": reaped, "own_status_during_reap": JobRun.objects.get(pk=ctx.run.pk).status}
