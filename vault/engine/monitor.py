"""How a long engine operation (a backup, a restore) reports progress and learns it should stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled


@dataclass(frozen=True)
class Monitor:
    """The caller's two hooks, both called from the calling thread (never from a worker pool), so
    they may touch thread-bound things such as a Django database connection.

    progress: called with the bytes done so far.
    should_cancel: asked before each chunk; True stops the operation with Cancelled.
    """

    progress: Callable[[int], None] | None = None
    should_cancel: Callable[[], bool] | None = None

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done)

    def stop_if_cancelled(self, message: str) -> None:
        """Raise Cancelled(message) if the caller asks to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(message)


UNWATCHED = Monitor()
