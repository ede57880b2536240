"""The RQ worker class `make run` uses. When it starts it repairs the job rows a crash left behind
(jobs.maintenance.reap_orphaned_runs), then queues the start-up jobs: work that a killed worker or a
power loss may have left half done (backup snapshots, store points without a row)."""

from __future__ import annotations

from typing import Any

from django.db import connections
from rq import Worker

# Job kinds queued each time a worker starts, unless one is already queued or running. An app adds
# its own here; a kind not registered in this deployment is skipped with a log line.
STARTUP_JOB_KINDS: tuple[str, ...] = (
    "protection.cleanup_snapshots",  # snapshots left on VMs by a backup whose worker died
    "vault.reconcile",  # store points and RecoveryPoint rows that disagree after a crash
    "recovery.catalog_backfill",  # recovery points not yet in the file catalog (older ones, a crashed job)
)


class CleaningWorker(Worker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from jobs.maintenance import reap_orphaned_runs

        try:
            reap_orphaned_runs()
        except Exception:  # housekeeping that fails must not stop the worker; cron tries again
            self.log.exception("could not repair the job rows")
        queue_startup_jobs(self.log)
        # The housekeeping above opened database connections in this process, which forks a work horse
        # per job: a forked horse must never inherit (and share) one. A horse killed mid-query would
        # leave it broken for every later job, and after a database restart every job of this worker
        # would fail on the dead connection it inherited. django-rq closes them before work for the
        # same reason; we opened them again.
        connections.close_all()
        return super().work(*args, **kwargs)


def queue_startup_jobs(log: Any) -> list[str]:
    """Queue each of STARTUP_JOB_KINDS not already queued or running; returns the kinds queued."""
    from jobs.models import JobRun
    from jobs.registry import UnknownJobKind
    from jobs.runner import enqueue

    queued = []
    for kind in STARTUP_JOB_KINDS:
        try:
            if not JobRun.objects.filter(kind=kind, status__in=JobRun.ACTIVE).exists():
                enqueue(kind)
                queued.append(kind)
        except UnknownJobKind:
            log.warning("start-up job %s is not a registered job kind; skipped", kind)
        except Exception:  # one start-up job that cannot be queued must not keep the others or the worker
            log.exception("could not queue the start-up job %s", kind)
    return queued
