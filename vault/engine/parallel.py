"""A bounded, ordered map over a thread pool (Executor.map submits everything up front, which for a
2 TiB disk means half a million futures)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(pool: ThreadPoolExecutor, func: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """Results in input order, with at most `window` items submitted and not yet consumed."""
    queue: deque[Future[R]] = deque()
    try:
        for item in items:
            queue.append(pool.submit(func, item))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()
