"""tests/children.py, the harness of the crash and kill tests: a child's marker is never missed, and a
marker that does not come is explained (exit code and error, or the stack where the child hangs)."""

from __future__ import annotations

import pytest

from tests.children import Child

# More than a pipe buffer on stderr before the marker: a harness reading stderr only at the end would hang.
CHATTY = r"""
import sys, time
sys.stderr.write("warning: something worth a line\n" * 20000)  # ~640 KiB, ten pipe buffers
sys.stderr.flush()
print("reached", flush=True)
time.sleep(600)
"""

HANGS = r"""
import threading

def stuck_waiting_for_a_lock_nobody_releases():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()

print("ready", flush=True)
stuck_waiting_for_a_lock_nobody_releases()
"""

DIES = r"""
print("ready", flush=True)
raise RuntimeError("the store is unreadable")
"""


def test_a_child_that_writes_much_to_stderr_still_reaches_its_marker():
    with Child(CHATTY) as child:
        child.wait_for("reached", timeout=60, what="it wrote its warnings")
        child.kill()
    assert child.stderr.count("something worth a line") == 20000


def test_a_hanging_child_is_reported_with_where_it_hangs():
    with Child(HANGS) as child:
        child.wait_for("ready", timeout=60, what="it started")
        with pytest.raises(AssertionError) as failure:
            child.wait_for("done", timeout=0.5, what="it finished its work")
    message = str(failure.value)
    assert "did not print 'done' within 0.5 s (it finished its work)" in message
    assert "'ready' at" in message and "still running" in message
    assert "stuck_waiting_for_a_lock_nobody_releases" in message  # the child's stack


def test_a_child_that_dies_is_reported_with_its_exit_code_and_error():
    with Child(DIES) as child, pytest.raises(AssertionError) as failure:
        child.wait_for("done", timeout=60, what="it finished its work")
    message = str(failure.value)
    assert "exited (code 1) before it finished its work" in message
    assert "RuntimeError: the store is unreadable" in message
