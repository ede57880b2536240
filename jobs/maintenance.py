"""Housekeeping for job rows, run by RQ's cron scheduler (see config/cron.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from django.utils import timezone
from rq.registry import StartedJobRegistry

from jobs.models import JobRun

logger = logging.getLogger(__name__)
Status = JobRun.Status

# A job just claimed may not yet be in RQ's registry view; leave young rows alone.
GRACE = timedelta(minutes=2)


def reap_orphaned_runs() -> int:
    """Mark *running* rows whose worker is gone (killed, machine restarted) as errored."""
    cutoff = timezone.now() - GRACE
    reaped = 0
    for queue_name in JobRun.objects.filter(status=Status.RUNNING).values_list("queue", flat=True).distinct():
        queue = django_rq.get_queue(queue_name)
        alive = set(StartedJobRegistry(queue=queue).get_job_ids())
        stale = JobRun.objects.filter(status=Status.RUNNING, queue=queue_name, started__lt=cutoff).exclude(pk__in=alive)
        reaped += stale.update(
            status=Status.ERRORED,
            finished=timezone.now(),
            error="The worker running this job stopped before it finished.",
        )
    if reaped:
        logger.warning("marked %d orphaned job run(s) as errored", reaped)
    return reaped
