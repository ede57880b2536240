"""Waiting for a powered-on VM's guest: VMware Tools running, a green heartbeat and, when wanted, an IP
address, as vCenter reports them (guest.toolsRunningStatus, guestHeartbeatStatus, guest.ipAddress).
A restore test proves with it that a recovered VM boots (Xen Orchestra's health check does the same)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyVmomi import vim

from .connection import Connection
from .errors import NotFound
from .soap import read_one

POLL_INTERVAL = 0.5  # seconds between reads: three properties of one VM, one small round trip
TOOLS_RUNNING = "guestToolsRunning"
HEARTBEAT_OK = "green"
_PATHS = ["runtime.powerState", "guest.toolsRunningStatus", "guestHeartbeatStatus", "guest.ipAddress"]


@dataclass(frozen=True)
class GuestReport:
    tools_running: bool  # guest.toolsRunningStatus is guestToolsRunning
    heartbeat: str  # guestHeartbeatStatus: "green", "yellow", "red" or "gray" (no heartbeat)
    ip: str  # guest.ipAddress, "" when none is reported
    waited: float  # seconds from the call to the last read
    timed_out: bool  # what was waited for did not happen within the timeout (the fields: the last read)

    @property
    def ready(self) -> bool:
        """Tools running with a green heartbeat."""
        return self.tools_running and self.heartbeat == HEARTBEAT_OK


def wait_for_guest(
    conn: Connection, vm_moref: str, *, timeout: float, want_ip: bool, poll: float = POLL_INTERVAL
) -> GuestReport:
    """Wait until the VM's tools run with a green heartbeat (and it reports an IP address when want_ip),
    reading every `poll` seconds for at most `timeout` seconds. A timeout is an answer, not an error:
    timed_out is True and the report holds what was seen last. NotFound when the VM does not exist (or
    is removed meanwhile); other VCenterErrors as for any read."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    started = time.monotonic()
    deadline = started + max(timeout, 0.0)
    while True:
        props = read_one(conn, vm, list(_PATHS))
        if "runtime.powerState" not in props:
            raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} does not exist (any more)")
        now = time.monotonic()
        report = GuestReport(
            tools_running=props.get("guest.toolsRunningStatus") == TOOLS_RUNNING,
            heartbeat=str(props.get("guestHeartbeatStatus") or "gray"),
            ip=str(props.get("guest.ipAddress") or ""),
            waited=now - started,
            timed_out=False,
        )
        if report.ready and (report.ip or not want_ip):
            return report
        if now >= deadline:
            return GuestReport(report.tools_running, report.heartbeat, report.ip, report.waited, timed_out=True)
        time.sleep(min(poll, deadline - now))
