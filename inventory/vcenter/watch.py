"""Live changes of VMs and VM folders, through WaitForUpdatesEx (ChangeWatcher)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from pyVmomi import vim, vmodl

from .connection import ClosedOnExit, Connection, translated
from .errors import Unreachable, VCenterError
from .soap import skip_updates
from .vmomi import build, moref_of

WAIT_SLICE = 60  # seconds: longest single WaitForUpdatesEx, well below READ_TIMEOUT (the socket timeout)


@dataclass(frozen=True)
class ChangeSet:
    """What changed since the previous ChangeWatcher.wait().

    A moref in vms_changed may be gone by the time it is read (fetch_vms then leaves it out).
    """

    vms_changed: frozenset[str]  # entered (created, moved in) or modified
    vms_removed: frozenset[str]
    folders_changed: bool
    version: str


class ChangeWatcher(ClosedOnExit):
    """Reports VMs and VM folders that change, through WaitForUpdatesEx on a PropertyCollector of its
    own (CreatePropertyCollector: other readers of the connection are not disturbed). Use as a
    context manager; close() destroys the collector and its view.

    The first wait() returns everything as entered (the initial state); skip_initial=True consumes
    it at once. A dead connection or an ended session raises Unreachable: reconnect and start a new
    watcher (and re-read the inventory: changes in between were not seen).
    """

    VM_PROPERTIES = (
        "name",
        "parent",
        "runtime.powerState",
        "config.template",
        "runtime.host",
        "resourcePool",
        "config.changeVersion",  # changes when disks are added, removed or resized
    )
    FOLDER_PROPERTIES = ("name", "parent", "childType")

    def __init__(self, conn: Connection, *, skip_initial: bool = False) -> None:
        self.conn = conn
        self.version = ""
        self._cancelled = threading.Event()
        content = conn.content
        with translated(conn.endpoint):
            self._pc = content.propertyCollector.CreatePropertyCollector()
            try:
                self._view = conn.view_manager.CreateContainerView(
                    content.rootFolder, [vim.VirtualMachine, vim.Folder], True
                )
                # One filter per type: vcsim 0.24.2 panics (and drops the connection) when a filter
                # with several types sees a change of a VM deleted in the same batch (powered off,
                # then destroyed), as it looks the deleted VM's type up for the other type's spec.
                self._pc.CreateFilter(self._filter(vim.VirtualMachine, self.VM_PROPERTIES), partialUpdates=True)
                self._pc.CreateFilter(self._filter(vim.Folder, self.FOLDER_PROPERTIES), partialUpdates=True)
            except BaseException:
                self.close()
                raise
        if skip_initial:
            self._consume_initial()

    def _filter(self, kind: type, properties: Sequence[str]) -> vmodl.query.PropertyCollector.FilterSpec:
        pcq = vmodl.query.PropertyCollector
        return build(
            pcq.FilterSpec,
            objectSet=[
                build(
                    pcq.ObjectSpec,
                    obj=self._view,
                    skip=True,
                    selectSet=[build(pcq.TraversalSpec, name="view", type=vim.view.ContainerView, path="view")],
                )
            ],
            propSet=[build(pcq.PropertySpec, type=kind, pathSet=list(properties))],
        )

    def _consume_initial(self) -> None:
        """Read the initial state (every watched object as entered) and drop it, raw: see skip_updates."""
        while True:
            self.version, truncated = skip_updates(self.conn, moref_of(self._pc), self.version)
            if not truncated:
                return

    def wait(self, timeout_seconds: float) -> ChangeSet | None:
        """Changes since the last call, as soon as there are some; None after timeout_seconds without,
        or once cancel() is called."""
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        while not self._cancelled.is_set():
            remaining = deadline - time.monotonic()
            update = self._wait_once(min(WAIT_SLICE, max(0, math.ceil(remaining))))
            if update is not None:
                return _change_set(update)
            if time.monotonic() >= deadline:
                return None
        self._cancelled.clear()
        return None

    def cancel(self) -> None:
        """Make the wait() pending in another thread (or the next one) return None at once: for
        shutting down without waiting out maxWaitSeconds."""
        self._cancelled.set()
        with suppress(VCenterError), translated(self.conn.endpoint):
            self._pc.CancelWaitForUpdates()

    def _wait_once(self, max_wait: int) -> vmodl.query.PropertyCollector.UpdateSet | None:
        # The HTTP read timeout (READ_TIMEOUT) is longer than max_wait (at most WAIT_SLICE): a server
        # that dies without closing the connection is noticed then, not never.
        options = build(vmodl.query.PropertyCollector.WaitOptions, maxWaitSeconds=max_wait)
        with translated(self.conn.endpoint):
            try:
                update = self._pc.WaitForUpdatesEx(version=self.version, options=options)
            except vmodl.fault.RequestCanceled:  # cancel()
                return None
            except vmodl.fault.ManagedObjectNotFound:  # our collector is gone: vCenter restarted
                raise Unreachable(
                    f"{self.conn.endpoint.where}: the change collector is gone (vCenter restarted)"
                ) from None
        if update is not None:
            self.version = update.version
        return update

    def close(self) -> None:
        with suppress(Exception):  # on a dead connection there is nothing left to clean up
            if getattr(self, "_view", None) is not None:
                self._view.DestroyView()
        with suppress(Exception):
            self._pc.DestroyPropertyCollector()


def _change_set(update: vmodl.query.PropertyCollector.UpdateSet) -> ChangeSet:
    seen: dict[str, set[str]] = {"enter": set(), "modify": set(), "leave": set()}
    folders = False
    for filter_update in update.filterSet or []:
        for object_update in filter_update.objectSet or []:
            if isinstance(object_update.obj, vim.Folder):
                folders = True
            else:
                seen[str(object_update.kind)].add(moref_of(object_update.obj))
    # A VM that left and entered was moved (vcsim reports a move so, in either order): it exists.
    # One that was modified and left (powered off, then destroyed) is gone: morefs are never reused.
    removed = seen["leave"] - seen["enter"]
    changed = (seen["enter"] | seen["modify"]) - removed
    return ChangeSet(frozenset(changed), frozenset(removed), folders, update.version)
