"""Housekeeping for job rows, run by RQ's cron scheduler (see config/cron.py) and when a worker starts.

The rule it keeps: every JobRun that is not final has a live RQ job, or is made final (errored, with a
sentence saying why) within two minutes. A *running* row whose worker is gone is errored; a *queued*
row whose RQ job is gone (Redis restarted without its data, an enqueue that failed, a job removed) is
queued again a bounded number of times, then errored; a job waiting in vain for a predecessor that
ended without RQ noticing is released. Rows made final here release whatever waits on them and send
`jobs.signals.run_finalised`, so the apps above free what those runs held.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import as_text

from jobs.models import JobRun
from jobs.runner import put_on_queue
from jobs.signals import run_finalised

logger = logging.getLogger(__name__)
Status = JobRun.Status

# A job just claimed may not yet be in RQ's registry view; leave young running rows alone.
GRACE = timedelta(minutes=2)
# A queued row's enqueue waits for its transaction to commit; one minute covers a slow commit, and
# with the reaper running every minute a lost entry is repaired within two.
QUEUE_GRACE = timedelta(minutes=1)
# Times a row is put on its queue (the first enqueue included) before it is errored instead.
MAX_QUEUE_ATTEMPTS = 3


class QueueState(enum.Enum):
    LIVE = "live"  # queued, deferred on a predecessor that will release it, scheduled or started
    LOST = "lost"  # no RQ job, or one that will never run (finished, failed, cancelled, not listed)
    STRANDED = "stranded"  # deferred on a predecessor that ended or forgot it: RQ will not release it


def reap_orphaned_runs() -> int:
    """Make every non-final row either live in RQ or final; returns how many rows were made final.

    A job whose process on this host is gone is reaped at once (a restarted worker calls this first);
    otherwise RQ's registry tells, after a grace period, whether any worker still runs it.
    """
    finalised = _reap_dead_workers() + _repair_queue_entries()
    if finalised:
        logger.warning("marked %d orphaned job run(s) as errored", len(finalised))
    return len(finalised)


def release_waiting(run_ids: Iterable[Any]) -> list[Any]:
    """Queue the jobs that wait for these runs, which have ended where RQ did not see it (a cancel
    before the start, a dead worker): RQ only releases a job's dependents when it finishes the job.
    Returns the ids of the jobs put on their queue."""
    waiting = list(JobRun.objects.filter(after_id__in=list(run_ids), status=Status.QUEUED).order_by("created"))
    if not waiting:
        return []
    states = _queue_states(waiting, ended_before=timezone.now())
    released = [run for run in waiting if states[run.pk] is not QueueState.LIVE]
    for run in released:
        put_on_queue(run, counted=False)
    return [run.pk for run in released]


def _dead_here(worker: str) -> bool:
    """True when the job ran in a process of this machine (settings.MACHINE_NAME) that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != settings.MACHINE_NAME or not pid.isdigit():
        return False
    try:
        status = open(f"/proc/{int(pid)}/status").read()  # noqa: SIM115
    except FileNotFoundError:
        return True
    except OSError:
        return False
    # A killed process whose parent died too may linger as a zombie until init reaps it.
    return "\nState:\tZ" in status or "\nState:\tX" in status


def _reap_dead_workers() -> list[Any]:
    running = JobRun.objects.filter(status=Status.RUNNING)
    dead = [pk for pk, worker in running.values_list("pk", "worker") if _dead_here(worker)]
    reaped = _finalise(dead, "The worker running this job was stopped.", from_status=Status.RUNNING)
    cutoff = timezone.now() - GRACE
    for queue_name in running.values_list("queue", flat=True).distinct():
        alive = set(StartedJobRegistry(queue=django_rq.get_queue(queue_name)).get_job_ids())
        stale = running.filter(queue=queue_name, started__lt=cutoff).exclude(pk__in=alive)
        reaped += _finalise(
            list(stale.values_list("pk", flat=True)),
            "The worker running this job stopped before it finished.",
            from_status=Status.RUNNING,
        )
    release_waiting(reaped)
    return reaped


def _repair_queue_entries() -> list[Any]:
    cutoff = timezone.now() - QUEUE_GRACE
    # A row whose enqueue failed needs no grace: no commit is on its way to queue it.
    due = JobRun.objects.filter(status=Status.QUEUED).filter(Q(created__lt=cutoff) | ~Q(queue_error=""))
    rows = _predecessors_first(due.order_by("created"))
    if not rows:
        return []
    states = _queue_states(rows, ended_before=cutoff)
    finalised: list[Any] = []
    released: set[Any] = set()  # queued again because a predecessor was errored earlier in this pass
    for run in rows:
        state = states[run.pk]
        if run.pk in released:
            continue
        if state is QueueState.STRANDED:
            put_on_queue(run, counted=False)
        elif state is QueueState.LOST:
            given_up = _requeue_or_give_up(run)
            finalised += given_up
            released.update(release_waiting(given_up))
    return finalised


def _predecessors_first(runs: Iterable[JobRun]) -> list[JobRun]:
    """Order rows so each comes after the one it waits for: a chain is rebuilt from its head, each
    job queued again waiting on its predecessor's new entry (creation times can tie)."""
    runs = list(runs)
    by_id = {run.pk: run for run in runs}
    ordered: list[JobRun] = []
    placed: set[Any] = set()
    for run in runs:
        lineage: list[JobRun] = []
        step: JobRun | None = run
        while step is not None and step.pk not in placed:
            lineage.append(step)
            placed.add(step.pk)
            step = by_id.get(step.after_id) if step.after_id is not None else None
        ordered.extend(reversed(lineage))
    return ordered


def _requeue_or_give_up(run: JobRun) -> list[Any]:
    """Queue a row whose entry was lost again, or error it once it has had its attempts."""
    with transaction.atomic():
        # Locked, so two reapers (cron and a starting worker) never queue the same row twice.
        locked = JobRun.objects.select_for_update(skip_locked=True).filter(pk=run.pk, status=Status.QUEUED).first()
        if locked is None:
            return []
        failure = _failure_before_start(locked)  # read before a new entry replaces the failed one
        if locked.queue_attempts < MAX_QUEUE_ATTEMPTS:
            if put_on_queue(locked, note=_requeue_note(locked, failure)):
                return []
            locked.refresh_from_db(fields=["queue_attempts", "queue_error"])
            if locked.queue_attempts < MAX_QUEUE_ATTEMPTS:
                return []
        return _finalise([locked.pk], _give_up_reason(locked, failure), from_status=Status.QUEUED)


def _failure_before_start(run: JobRun) -> str:
    """The error RQ recorded for a job that failed before our runner could claim its row (a worker
    whose database or Redis connection broke), or "": it says why better than "lost" would."""
    try:
        job = Job.fetch(str(run.pk), connection=django_rq.get_queue(run.queue).connection)
        result = job.latest_result()
    except Exception:  # no such job any more, or Redis itself is the trouble: nothing to quote
        return ""
    if result is None or result.type != result.Type.FAILED or not result.exc_string:
        return ""
    return result.exc_string.strip().splitlines()[-1][:300]


def _requeue_note(run: JobRun, failure: str) -> str:
    attempt = f"attempt {run.queue_attempts + 1} of {MAX_QUEUE_ATTEMPTS}"
    if run.queue_error:
        return f"Queued again after an earlier attempt failed ({attempt})."
    if failure:
        return f"It failed before it could start ({failure}); queued again ({attempt})."
    return f"Its queue entry was lost (Redis restarted without it, or it was removed); queued again ({attempt})."


def _give_up_reason(run: JobRun, failure: str) -> str:
    if run.queue_error:
        return f"It could not be queued ({run.queue_attempts} attempts): {run.queue_error}"
    if failure:
        return f"It failed before it could start, {run.queue_attempts} times; the last error: {failure}"
    return (
        f"Its queue entry was lost {run.queue_attempts} times (Redis restarted without it, or it was removed); "
        "it was not queued again."
    )


def _finalise(run_ids: list[Any], error: str, *, from_status: str) -> list[Any]:
    """Error these rows if they are still in `from_status`, and have what they held freed; returns
    the rows errored (the caller releases the jobs waiting on them)."""
    if not run_ids:
        return []
    with transaction.atomic():
        ids = list(
            JobRun.objects.select_for_update().filter(pk__in=run_ids, status=from_status).values_list("pk", flat=True)
        )
        if not ids:
            return []
        JobRun.objects.filter(pk__in=ids).update(status=Status.ERRORED, finished=timezone.now(), error=error)
        run_finalised.send(sender=JobRun, run_ids=ids)
    return ids


def _queue_states(rows: list[JobRun], *, ended_before: datetime) -> dict[Any, QueueState]:
    """Where each queued row stands in RQ. A predecessor that ended before `ended_before` should have
    released its waiters by now; one that ended later may still be doing so."""
    predecessors = {
        pk: (status, finished)
        for pk, status, finished in JobRun.objects.filter(pk__in={r.after_id for r in rows if r.after_id}).values_list(
            "pk", "status", "finished"
        )
    }
    states: dict[Any, QueueState] = {}
    for queue_name in {run.queue for run in rows}:
        in_queue = [run for run in rows if run.queue == queue_name]
        states.update(_states_in_queue(queue_name, in_queue, predecessors, ended_before))
    return states


def _states_in_queue(
    queue_name: str, rows: list[JobRun], predecessors: dict[Any, tuple[str, datetime | None]], ended_before: datetime
) -> dict[Any, QueueState]:
    queue = django_rq.get_queue(queue_name)
    connection = queue.connection
    # Jobs of a worker that died before claiming them move to "failed" here, so they read as lost.
    StartedJobRegistry(queue=queue).cleanup()
    listed = set(queue.get_job_ids()) | {as_text(i) for i in connection.lrange(queue.intermediate_queue_key, 0, -1)}
    with connection.pipeline(transaction=False) as pipe:  # reads only: no MULTI, which a full Redis refuses
        for run in rows:
            pipe.hget(Job.key_for(str(run.pk)), "status")
            # Whether RQ's predecessor still lists it as waiting (what releases it when that one ends).
            pipe.sismember(Job.dependents_key_for(str(run.after_id or "none")), str(run.pk))
        replies = pipe.execute()
    states = {}
    for run, rq_status, chained in zip(rows, replies[::2], replies[1::2], strict=True):
        status = as_text(rq_status) if rq_status else None
        if status == JobStatus.DEFERRED:
            states[run.pk] = _deferred_state(run, predecessors.get(run.after_id), bool(chained), ended_before)
        else:
            states[run.pk] = _undeferred_state(status, listed=str(run.pk) in listed)
    return states


def _undeferred_state(rq_status: str | None, *, listed: bool) -> QueueState:
    if rq_status in (JobStatus.STARTED, JobStatus.SCHEDULED):
        return QueueState.LIVE
    # "queued" but not in the queue's list (removed from it) never runs either.
    return QueueState.LIVE if rq_status == JobStatus.QUEUED and listed else QueueState.LOST


def _deferred_state(
    run: JobRun, predecessor: tuple[str, datetime | None] | None, chained: bool, ended_before: datetime
) -> QueueState:
    if run.after_id is None:
        return QueueState.LIVE  # it waits on something this row does not record: RQ's business
    if predecessor is None or not chained:
        return QueueState.STRANDED  # its predecessor's row is gone, or RQ's link to it is
    status, finished = predecessor
    if status in JobRun.FINAL and (finished is None or finished < ended_before):
        return QueueState.STRANDED
    return QueueState.LIVE
