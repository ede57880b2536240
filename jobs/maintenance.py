"""Housekeeping for job rows, run by RQ's cron scheduler (see config/cron.py)."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import django_rq
from django.utils import timezone
from rq.registry import StartedJobRegistry

from jobs.models import JobRun

logger = logging.getLogger(__name__)
Status = JobRun.Status

# A job just claimed may not yet be in RQ's registry view; leave young rows alone.
GRACE = timedelta(minutes=2)


def _dead_here(worker: str) -> bool:
    """True when the job ran in a process of this host that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        status = open(f"/proc/{int(pid)}/status").read()  # noqa: SIM115
    except FileNotFoundError:
        return True
    except OSError:
        return False
    # A killed process whose parent died too may linger as a zombie until init reaps it.
    return "\nState:\tZ" in status or "\nState:\tX" in status


def reap_orphaned_runs() -> int:
    """Mark *running* rows whose worker is gone (killed, machine restarted) as errored.

    A job whose process on this host is gone is reaped at once (a restarted worker calls this first);
    otherwise RQ's registry tells, after a grace period, whether any worker still runs it.
    """
    reaped = 0
    running_here = JobRun.objects.filter(status=Status.RUNNING).values_list("pk", "worker")
    dead = [pk for pk, worker in running_here if _dead_here(worker)]
    if dead:
        reaped += JobRun.objects.filter(pk__in=dead, status=Status.RUNNING).update(
            status=Status.ERRORED, finished=timezone.now(), error="The worker running this job was stopped."
        )
    cutoff = timezone.now() - GRACE
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
