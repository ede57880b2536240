"""Waiting for vCenter tasks (reading only info.state, info.error and info.result)."""

from __future__ import annotations

import time
from typing import Any

from pyVmomi import vim

from .connection import Connection, _fault_name
from .errors import VCenterError
from .soap import _read_one


class _TaskFailed(VCenterError):
    """A task ended in error; fault_name ("ApplicationQuiesceFault") and message say how."""

    def __init__(self, text: str, *, fault_name: str, message: str) -> None:
        super().__init__(text)
        self.fault_name = fault_name
        self.message = message


def _wait(conn: Connection, task: vim.Task, timeout: float = 3600.0) -> Any:
    """Poll a task's state, error and result only (never the whole task.info, see the package's doc)."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        props = _read_one(conn, task, ["info.state", "info.error", "info.result"])
        state = props.get("info.state")
        if state == vim.TaskInfo.State.success:
            return props.get("info.result")
        if state == vim.TaskInfo.State.error:
            raise _task_failure(task, props.get("info.error"))
        if time.monotonic() > deadline:
            raise VCenterError(f"task {task._moId} still {state} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _task_failure(task: vim.Task, error: Any) -> _TaskFailed:
    # info.error is a LocalizedMethodFault, which pyVmomi hands over as the fault itself with msg set
    # to the localized message; the wrapper (with .fault) is accepted too.
    fault = getattr(error, "fault", None) or error
    kind = _fault_name(fault) if fault is not None else "error"
    message = (getattr(error, "localizedMessage", None) or getattr(fault, "msg", None) or "").strip()
    text = f"task {task._moId} failed: {kind}" + (f": {message}" if message else "")
    return _TaskFailed(text, fault_name=kind, message=message)
