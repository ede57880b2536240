from __future__ import annotations

import contextlib
import logging
from typing import Any

import django_rq
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from audit.actions import record
from jobs.maintenance import release_waiting
from jobs.models import JobRun
from jobs.runner import forget_expired_executions
from jobs.signals import run_finalised

logger = logging.getLogger(__name__)
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
            run_finalised.send(sender=JobRun, run_ids=[run.pk])
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
    """Remove the RQ job and start the jobs chained after it, which RQ leaves deferred for ever."""
    # The row is the truth; removing the RQ job only saves a worker the claim attempt. Should Redis
    # fail here, the reaper releases the waiting jobs within two minutes.
    try:
        queue = django_rq.get_queue(run.queue)
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            job = Job.fetch(str(run.pk), connection=queue.connection)
            forget_expired_executions(queue.connection, job)  # or cancel() raises on them
            job.cancel()
        release_waiting([run.pk])
    except RedisError:
        logger.exception("could not remove cancelled job %s from its queue", run.pk)
