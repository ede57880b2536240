"""Waiting for vCenter tasks (reading only info.state, info.error and info.result)."""

from __future__ import annotations

import time
from typing import Any

from pyVmomi import vim

from .connection import Connection, fault_name
from .errors import VCenterError
from .soap import read_one
from .vmomi import moref_of


class TaskFailed(VCenterError):
    """A task ended in error; fault_name ("ApplicationQuiesceFault") and message say how."""

    def __init__(self, text: str, *, fault_name: str, message: str) -> None:
        super().__init__(text)
        self.fault_name = fault_name
        self.message = message


def wait_for_task(conn: Connection, task: vim.Task, timeout: float = 3600.0) -> Any:
    """Poll a task's state, error and result only (never the whole task.info, see the package's doc);
    returns info.result as pyVmomi gives it (untyped: the new VM for CreateVM_Task, None for most)."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        props = read_one(conn, task, ["info.state", "info.error", "info.result"])
        state = props.get("info.state")
        if state == vim.TaskInfo.State.success:
            return props.get("info.result")
        if state == vim.TaskInfo.State.error:
            raise _task_failure(task, props.get("info.error"))
        if time.monotonic() > deadline:
            raise VCenterError(f"task {moref_of(task)} still {state} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _task_failure(task: vim.Task, error: Any) -> TaskFailed:
    # info.error is a LocalizedMethodFault, which pyVmomi hands over as the fault itself with msg set
    # to the localized message; the wrapper (with .fault) is accepted too.
    fault = getattr(error, "fault", None) or error
    kind = fault_name(fault) if fault is not None else "error"
    message = (getattr(error, "localizedMessage", None) or getattr(fault, "msg", None) or "").strip()
    text = f"task {moref_of(task)} failed: {kind}" + (f": {message}" if message else "")
    return TaskFailed(text, fault_name=kind, message=message)
