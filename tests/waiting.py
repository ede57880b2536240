"""Waiting in tests: poll for a condition with a deadline instead of sleeping a guessed time.

A guessed sleep is either too short on a loaded machine (a flaky failure) or too long everywhere
(a slow suite), and when it is too short the failure says nothing about what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, what: str, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Raises AssertionError naming `what` ("the child printed 'slow'") once `timeout` seconds have
    passed; the predicate is always tried once more at the deadline, so a slow last poll is not
    mistaken for a timeout. Exceptions from the predicate propagate at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
