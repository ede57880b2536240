"""Keeping replication and garbage collection of one vault apart, across processes and machines.

Object stores have no shared/exclusive locks, so each side announces itself with a marker blob
(`locks/writer-<token>.json` or `locks/gc-<token>.json`), refreshed every minute, then looks for the
other side's fresh markers and backs off if it finds one. Because both write before they look, two
that start together both see each other and both back off; neither can miss the other. Many
replications may run together (they only add blobs); a GC runs alone. A marker not refreshed for
`STALE_AFTER` belongs to a process that died and is ignored (and removed by the next GC); so is one
whose process, on this machine (`MACHINE`), no longer exists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

from .blobs import Backend
from .errors import StoreError

LOCKS = "locks/"
REFRESH_SECONDS = 60.0
STALE_AFTER = dt.timedelta(minutes=10)
# This machine, as markers name it: MACHINE_NAME when set (as config reads it for jobs' rows), else the
# host name. Two machines sharing a host name (containers, cloned VMs) must not take each other's
# markers for their own, which would let a replication run during the other machine's GC.
MACHINE = os.environ.get("MACHINE_NAME") or socket.gethostname()


class VaultBusy(StoreError):
    """The other side holds the vault; try again later."""


def _fresh(backend: Backend, kind: str, own: str) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    return [
        info.name
        for info in backend.list(f"{LOCKS}{kind}-")
        if info.name != own and now - info.modified < STALE_AFTER and not _owner_gone(backend, info.name)
    ]


def _owner_gone(backend: Backend, name: str) -> bool:
    """True when the marker's process ran on this machine and no longer exists (a killed GC or
    replication): its marker need not age `STALE_AFTER` before the other side may go on."""
    try:
        owner = json.loads(backend.get(name))
        if owner.get("host") != MACHINE:
            return False  # another machine's process: only its age tells
        status = open(f"/proc/{int(owner['pid'])}/status").read()  # noqa: SIM115
    except FileNotFoundError:
        return True  # no such process on this host
    except Exception:  # a marker deleted meanwhile, unreadable, or another layout: trust its age
        return False
    return "\nState:\tZ" in status or "\nState:\tX" in status


def stale_markers(backend: Backend) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    return [info.name for info in backend.list(LOCKS) if now - info.modified >= STALE_AFTER]


@contextlib.contextmanager
def _marker(backend: Backend, kind: str, blocker: str, wait_seconds: float, what: str) -> Iterator[None]:
    name = f"{LOCKS}{kind}-{secrets.token_hex(8)}.json"
    body = json.dumps({"host": MACHINE, "pid": os.getpid(), "kind": kind}).encode()
    deadline = time.monotonic() + wait_seconds
    while True:
        backend.put(name, body, overwrite=True)
        others = _fresh(backend, blocker, name)
        if not others:
            break
        backend.delete(name)
        if time.monotonic() >= deadline:
            raise VaultBusy(f"{backend.description}: {what} ({len(others)} marker(s) under {LOCKS})")
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(REFRESH_SECONDS):
            with contextlib.suppress(Exception):  # a missed refresh only makes the marker look older
                backend.put(name, body, overwrite=True)

    thread = threading.Thread(target=refresh, name=f"vault-{kind}-marker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            backend.delete(name)


def writing(backend: Backend, *, wait_seconds: float = 600.0) -> contextlib.AbstractContextManager[None]:
    """Held by a replication: waits (up to `wait_seconds`) while a garbage collection runs."""
    return _marker(backend, "writer", "gc", wait_seconds, "a garbage collection is running in the vault")


def collecting(backend: Backend) -> contextlib.AbstractContextManager[None]:
    """Held by a garbage collection: refuses at once while anything else writes or collects."""

    @contextlib.contextmanager
    def both() -> Iterator[None]:
        with _marker(backend, "gc", "writer", 0, "a replication is running in the vault; collect later"):
            others = _fresh(backend, "gc", "")
            if len(others) > 1:  # ours and another: the other started first or at once; both yield
                raise VaultBusy(f"{backend.description}: another garbage collection is running")
            yield

    return both()
