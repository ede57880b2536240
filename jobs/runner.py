"""The one wrapper every background job runs through.

`enqueue()` writes the JobRun row and, once the transaction commits, puts it on its RQ queue under
the row's id (`put_on_queue`: a Redis failure is recorded on the row, and jobs.maintenance retries);
`execute()` is the RQ entry point: it claims the row, runs the registered handler with a
`JobContext`, and records how it ended. Handlers raise `JobFailed` for expected conditions
(shown to the user as is) and let anything else propagate (recorded as *errored* with the
traceback).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any

import django_rq
from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Dependency, Job
from rq.utils import as_text

from jobs.models import JobRun
from jobs.registry import UnknownJobKind, get_kind

logger = logging.getLogger(__name__)
Status = JobRun.Status

# How often progress and cancellation are synchronised with the database, at most.
FLUSH_INTERVAL = 0.5
CANCEL_CHECK_INTERVAL = 1.0


class JobFailed(Exception):
    """An expected failure; the message is shown to the user as the job's error."""


class JobCancelled(Exception):
    """Raised inside a handler by `ctx.check_cancelled()` once someone asked to cancel."""


def enqueue(
    kind: str,
    *,
    params: dict[str, Any] | None = None,
    target: models.Model | None = None,
    target_label: str = "",
    user: Any = None,
    title: str = "",
    after: JobRun | None = None,
) -> JobRun:
    """Create the JobRun row and put it on its queue when the current transaction commits.

    `after`: start only once that job has ended, whatever its outcome (chains limit parallelism).
    If Redis cannot take the job at commit, the row says so and the reaper tries again
    (jobs.maintenance); the caller's committed change is never undone by a queue failure.
    """
    job_kind = get_kind(kind)
    with transaction.atomic():
        run = JobRun.objects.create(
            kind=kind,
            title=title or job_kind.title,
            queue=job_kind.queue,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            target_label=(target_label or (str(target) if target is not None else ""))[:255],
            params=params or {},
            created_by=user if getattr(user, "is_authenticated", False) else None,
            after=after,
        )
        # After commit, so the worker always finds the row.
        transaction.on_commit(lambda: put_on_queue(run))
    return run


def put_on_queue(run: JobRun, *, note: str = "", counted: bool = True) -> bool:
    """Give a row that is not final a fresh RQ job; returns False (recorded on the row) if Redis refused.

    `counted`: this is an attempt against the reaper's limit (the first enqueue, or a lost entry
    queued again); releasing a job whose predecessor ended is not. `note` is logged on success.
    """
    if counted:
        JobRun.objects.filter(pk=run.pk).update(queue_attempts=models.F("queue_attempts") + 1)
    try:
        _replace_rq_job(run)
    except Exception as exc:  # any failure here must end up on the row, not in the committer's face
        logger.exception("job %s (%s) could not be queued", run.pk, run.kind)
        error = f"{type(exc).__name__}: {exc}"
        _add_log_line(run.pk, f"It could not be queued, and will be tried again: {error}", "error", queue_error=error)
        return False
    if note or run.queue_error:
        _add_log_line(run.pk, note, "warning", queue_error="")
    return True


def _replace_rq_job(run: JobRun) -> None:
    """Enqueue `execute(run.pk)` under the row's id, replacing a leftover RQ job of that id.

    The job waits for `run.after` only while that row has not ended: RQ's own dependency bookkeeping
    may be gone (Redis restarted) or never fire (a cancelled or reaped predecessor).
    """
    queue = django_rq.get_queue(run.queue, commit_mode="auto")
    connection = queue.connection
    job_id = str(run.pk)
    waiting_on_it = _delete_rq_job(connection, job_id)
    if waiting_on_it:
        # Jobs chained on the old entry wait on the new one; set before it exists, so it cannot end first.
        connection.sadd(Job.dependents_key_for(job_id), *waiting_on_it)
    predecessor = _predecessor_to_wait_for(run)
    queue.enqueue_call(
        func=execute,
        args=(job_id,),
        job_id=job_id,
        depends_on=Dependency(jobs=[predecessor], allow_failure=True) if predecessor else None,
        timeout=_timeout_of(run.kind),
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )


def _delete_rq_job(connection: Any, job_id: str) -> list[str]:
    """Delete RQ's job `job_id` if it exists; returns the ids of the jobs that waited on it."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return []
    waiting_on_it = job.dependent_ids
    for dependency_id in connection.smembers(job.dependencies_key):
        # Otherwise the predecessor's end would enqueue this id a second time.
        connection.srem(Job.dependents_key_for(as_text(dependency_id)), job_id)
    forget_expired_executions(connection, job)
    job.delete()
    return waiting_on_it


def forget_expired_executions(connection: Any, job: Job) -> None:
    """Drop the executions of `job` whose record expired while RQ still lists them (a worker killed
    mid-job: its execution hash lives as long as the last heartbeat, the lists longer). job.delete()
    fetches every listed execution and raises ValueError on such a one, which made the reaper's
    attempts to queue the job again fail until it gave up on the run."""
    expired = [
        Execution(id=as_text(execution_id), job_id=job.id, connection=connection)
        for execution_id in connection.zrange(job.execution_registry.key, 0, -1)
    ]
    expired = [execution for execution in expired if not connection.exists(execution.key)]
    if expired:
        with connection.pipeline() as pipeline:
            for execution in expired:  # from the job's list and from the started registry
                execution.delete(job=job, pipeline=pipeline)
            pipeline.execute()


def _predecessor_to_wait_for(run: JobRun) -> str | None:
    """The id of the job `run` must still wait for, or None once its predecessor has ended.

    Past a predecessor that ended without running (cancelled before it started, or never queued), it
    waits for that one's own predecessor, so a chain keeps its place in the parallelism limit; the row
    then records the job it waits for.
    """
    predecessor = run.after
    while predecessor is not None and predecessor.is_final and predecessor.started is None:
        predecessor = predecessor.after
    if predecessor is None or predecessor.is_final:
        return None
    if predecessor.pk != run.after_id:
        JobRun.objects.filter(pk=run.pk).update(after=predecessor)
        run.after = predecessor
    return str(predecessor.pk)


def _timeout_of(kind: str) -> int:
    try:
        return get_kind(kind).timeout or settings.JOB_TIMEOUT
    except UnknownJobKind:  # execute() will say so on the row
        return settings.JOB_TIMEOUT


def _add_log_line(run_id: Any, message: str, level: str, **fields: Any) -> None:
    """Append a line to a row's log (and set `fields`) outside any handler's JobContext."""
    with transaction.atomic():
        run = JobRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return
        if message:
            run.log.append({"t": timezone.now().isoformat(timespec="seconds"), "level": level, "msg": message})
            del run.log[: -JobRun.MAX_LOG_LINES]
        for name, value in fields.items():
            setattr(run, name, value)
        run.save(update_fields=["log", *fields])


class JobContext:
    """What a handler uses to report progress, write log lines and notice cancellation."""

    def __init__(self, run: JobRun) -> None:
        self.run = run
        self._dirty: set[str] = set()
        self._last_flush = 0.0
        self._last_cancel_check = time.monotonic()
        self._cancelled = False
        self._rate_mark: tuple[float, int] | None = None

    @property
    def params(self) -> dict[str, Any]:
        return self.run.params

    def log(self, message: str, level: str = "info") -> None:
        line = {"t": timezone.now().isoformat(timespec="seconds"), "level": level, "msg": message}
        self.run.log.append(line)
        del self.run.log[: -JobRun.MAX_LOG_LINES]
        self._dirty.add("log")
        logger.log(logging.getLevelName(level.upper()), "[%s] %s", self.run.pk, message)
        self._maybe_flush()

    def set_total(self, total: int | None, unit: str = "steps") -> None:
        self.run.progress_total = total
        self.run.progress_unit = unit
        self._dirty.update({"progress_total", "progress_unit"})
        self._maybe_flush()

    def progress(self, done: int) -> None:
        """Record absolute progress; the rate is measured over the last few seconds."""
        now = time.monotonic()
        if self._rate_mark is None:
            self._rate_mark = (now, done)
        else:
            then, done_then = self._rate_mark
            if now - then >= 1.0:
                self.run.rate = (done - done_then) / (now - then)
                self._rate_mark = (now, done)
                self._dirty.add("rate")
        self.run.progress_done = done
        self._dirty.add("progress_done")
        self._maybe_flush()

    def advance(self, units: int = 1) -> None:
        self.progress(self.run.progress_done + units)

    def cancel_requested(self) -> bool:
        """True once someone asked to cancel (read from the database at most once a second)."""
        now = time.monotonic()
        if now - self._last_cancel_check >= CANCEL_CHECK_INTERVAL:
            self._last_cancel_check = now
            self._cancelled = JobRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists()
        return self._cancelled

    def check_cancelled(self) -> None:
        """Call between units of work; raises JobCancelled once a cancel was requested."""
        if self.cancel_requested():
            raise JobCancelled()

    def flush(self) -> None:
        if self._dirty:
            JobRun.objects.filter(pk=self.run.pk).update(**{f: getattr(self.run, f) for f in self._dirty})
            self._dirty.clear()
        self._last_flush = time.monotonic()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self.flush()


def _drop_unusable_connections() -> None:
    """A worker that runs jobs in its own process keeps its database connection from job to job, as
    Django keeps one from request to request: one the database dropped meanwhile (a restart, a
    failover) is closed here, so this job connects afresh instead of failing on it."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.is_usable():
            conn.close()


def execute(run_id: str) -> str:
    """RQ entry point. Takes the row's primary key, never a model instance."""
    _drop_unusable_connections()
    # Claim atomically: a cancelled or already-claimed row is left alone.
    # machine:pid of the process running the job, so a reaper on this machine can tell it died.
    claimed = JobRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started=timezone.now(), worker=f"{settings.MACHINE_NAME}:{os.getpid()}"
    )
    if not claimed:
        return "not claimed"
    run = JobRun.objects.get(pk=run_id)
    ctx = JobContext(run)
    status, error, trace, result = Status.SUCCEEDED, "", "", {}
    try:
        result = get_kind(run.kind).handler(ctx, **run.params) or {}
    except JobCancelled:
        status, error = Status.CANCELLED, "Cancelled on request."
    except JobFailed as exc:
        status, error = Status.FAILED, str(exc)
    except Exception as exc:
        status, error, trace = Status.ERRORED, f"{type(exc).__name__}: {exc}", traceback.format_exc()
        logger.exception("job %s (%s) errored", run_id, run.kind)
    if status == Status.SUCCEEDED and run.progress_total:
        ctx.progress(run.progress_total)
    if error:
        ctx.log(error, level="error" if status != Status.CANCELLED else "warning")
    ctx.flush()
    JobRun.objects.filter(pk=run_id).update(
        status=status, error=error, traceback=trace, result=result, finished=timezone.now()
    )
    return status
