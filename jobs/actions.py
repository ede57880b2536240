from __future__ import annotations

import contextlib
from typing import Any

import django_rq
from django.db import transaction
from django.utils import timezone
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from audit.actions import record
from jobs.models import JobRun

Status = JobRun.Status


def cancel_job(run_id: str, user: Any) -> str:
    """Cancel a queued job at once, or ask a running one to stop at its next check.

    Returns a sentence for the user saying what happened.
    """
    with transaction.atomic():
        run = JobRun.objects.select_for_update().get(pk=run_id)
        if run.status == Status.QUEUED:
            JobRun.objects.filter(pk=run.pk).update(
                status=Status.CANCELLED, finished=timezone.now(), error="Cancelled before it started."
            )
            transaction.on_commit(lambda: _cancel_in_rq(run))
            message = f"{run.title} was cancelled before it started."
        elif run.status == Status.RUNNING:
            JobRun.objects.filter(pk=run.pk).update(cancel_requested=True)
            message = f"{run.title} will stop at its next checkpoint and clean up."
        else:
            return f"{run.title} has already ended ({run.get_status_display().lower()})."
        record(user, "job.cancel", target=run, details={"status_before": run.status})
    return message


def _cancel_in_rq(run: JobRun) -> None:
    # The row is the truth; removing the RQ job only saves a worker the claim attempt.
    queue = django_rq.get_queue(run.queue)
    with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
        Job.fetch(str(run.pk), connection=queue.connection).cancel()
