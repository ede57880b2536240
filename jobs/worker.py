"""The RQ worker class `make run` uses: it queues the cleanup of leftover backup snapshots when it
starts, because the most likely reason for leftovers is a worker that was killed."""

from __future__ import annotations

from typing import Any

from rq import Worker


class CleaningWorker(Worker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from jobs.runner import enqueue

        try:
            enqueue("protection.cleanup_snapshots")
        except Exception:  # a cleanup that cannot be queued must not stop the worker
            self.log.exception("could not queue the snapshot cleanup")
        return super().work(*args, **kwargs)
