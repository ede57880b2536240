"""The RQ worker class `make run` uses. When it starts it marks the jobs of a killed worker on this
host as errored, then queues the cleanup of the backup snapshots they left behind."""

from __future__ import annotations

from typing import Any

from rq import Worker


class CleaningWorker(Worker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from jobs.maintenance import reap_orphaned_runs
        from jobs.runner import enqueue

        try:
            reap_orphaned_runs()
            enqueue("protection.cleanup_snapshots")
        except Exception:  # a cleanup that cannot be queued must not stop the worker
            self.log.exception("could not queue the snapshot cleanup")
        return super().work(*args, **kwargs)
