"""Live change detection: one thread per vCenter applies new, renamed, moved and removed VMs
within seconds (PropertyCollector WaitForUpdatesEx), reconnecting when vCenter restarts.

Run by `python manage.py inventory watch` (started by `make run`). After every (re)connection the
watcher first registers its filter, then reads the whole inventory, so no change falls in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connection
from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import VCenter
from inventory.sync import apply_inventory, apply_vm_changes

logger = logging.getLogger(__name__)

WAIT_SECONDS = 5  # how long one WaitForUpdatesEx may block: also how fast a stop request is noticed
MAX_BACKOFF = 60
# A rejected password is retried rarely: repeated failed logins can lock the account in vCenter.
BAD_CREDENTIALS_BACKOFF = 300


class VCenterWatcher(threading.Thread):
    def __init__(self, vcenter_id: int, stop: threading.Event, on_sync: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"watch-vcenter-{vcenter_id}", daemon=True)
        self.vcenter_id = vcenter_id
        self.stop_event = stop
        self.on_sync = on_sync  # tests wait on this

    def run(self) -> None:
        backoff = 1.0
        try:
            while not self.stop_event.is_set():
                vc = VCenter.objects.filter(pk=self.vcenter_id).first()
                if vc is None:
                    return  # the connection was removed
                try:
                    self._watch(vc)
                    backoff = 1.0
                except vsphere.BadCredentials as exc:
                    self._failed(vc, exc)
                    backoff = BAD_CREDENTIALS_BACKOFF
                except vsphere.VCenterError as exc:
                    self._failed(vc, exc)
                except Exception:
                    logger.exception("watcher for %s failed; restarting", vc)
                self.stop_event.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
        finally:
            connection.close()

    def _failed(self, vc: VCenter, exc: Exception) -> None:
        logger.warning("watcher for %s: %s", vc, exc)
        VCenter.objects.filter(pk=vc.pk).update(last_sync_error=str(exc))

    def _watch(self, vc: VCenter) -> None:
        with open_connection(vc) as conn, vsphere.ChangeWatcher(conn, skip_initial=True) as watcher:
            result = apply_inventory(vc, vsphere.fetch_inventory(conn))
            logger.info(
                "%s: synced %d VMs (%d new, %d removed)", vc, result.vms_seen, result.vms_new, result.vms_removed
            )
            if self.on_sync:
                self.on_sync()
            while not self.stop_event.is_set():
                changes = watcher.wait(WAIT_SECONDS)
                close_old_connections()
                if changes is None:
                    continue
                if not VCenter.objects.filter(pk=vc.pk, host=vc.host, port=vc.port, updated=vc.updated).exists():
                    return  # edited or removed: reconnect with the new settings
                self._apply(vc, conn, changes)

    def _apply(self, vc: VCenter, conn: vsphere.Connection, changes: vsphere.ChangeSet) -> None:
        changed = vsphere.fetch_vms(conn, sorted(changes.vms_changed)) if changes.vms_changed else []
        folders = vsphere.fetch_folders(conn) if changes.folders_changed else None
        # A VM reported changed but gone by the time it was read was removed in between.
        gone = set(changes.vms_changed) - {vm.moref for vm in changed}
        result = apply_vm_changes(vc, changed, set(changes.vms_removed) | gone, folders)
        VCenter.objects.filter(pk=vc.pk).update(last_sync=timezone.now(), last_sync_error="")
        logger.info(
            "%s: %d VMs changed, %d removed, %d joined a group", vc, len(changed), result.vms_removed, result.joined
        )


def watch_all(stop: threading.Event, refresh_seconds: float = 1.0) -> None:
    """Keep one watcher per vCenter connection, adding watchers for new connections: a vCenter added
    is watched within a second (one query of the connections' ids a second costs nothing)."""
    watchers: dict[int, VCenterWatcher] = {}
    try:
        while not stop.is_set():
            for vc_id in VCenter.objects.values_list("pk", flat=True):
                if vc_id not in watchers or not watchers[vc_id].is_alive():
                    watchers[vc_id] = VCenterWatcher(vc_id, stop)
                    watchers[vc_id].start()
            close_old_connections()
            stop.wait(refresh_seconds)
    finally:
        stop.set()
        for watcher in watchers.values():
            watcher.join(WAIT_SECONDS * 3)
