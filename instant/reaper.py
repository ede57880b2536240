"""What instant recoveries leave in vCenter when a stop or a failed start could not finish (vCenter
unreachable, a worker killed), removed by the maintenance cron (config.cron, every 5 minutes):

- a stop that failed (its job ended, the recovery still stopping) is queued again, and a start whose
  worker was killed (its job ended, the recovery still queued or starting) is stopped;
- an NFS datastore this product mounted (named vmb-instant-N, mounting an export of this machine's
  INSTANT_NFS_ADDRESS under INSTANT_DIR) whose recovery N is over or unknown is removed: the VMs whose
  configuration lives on it are powered off and unregistered, then it is unmounted from every host.
  A VM migrated off it is never touched. Each removal is audited (instant.reap).
The local leftovers (mount, export, overlay) are the supervisor's (instant.supervisor).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit.actions import record
from instant import actions
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import VCenter
from jobs.models import JobRun

log = logging.getLogger("instant.reaper")
PREFIX = "vmb-instant-"


def reap_instant_leftovers() -> None:
    """The cron's entry point: retry failed stops, stop abandoned starts, then remove leftovers in
    every vCenter."""
    retry_failed_stops()
    stop_abandoned_starts()
    if not InstantRecovery.objects.exclude(state__in=actions.ACTIVE).exists():
        return  # no recovery ever ended, so none can have left anything: no vCenter is asked
    for vc in VCenter.objects.order_by("pk"):
        try:
            with open_connection(vc) as conn:
                reap_vcenter(conn, vc)
        except vsphere.VCenterError as exc:  # unreachable now: the next run tries again
            log.warning("instant recovery leftovers in %s not checked: %s", vc.name, exc)


def stop_abandoned_starts() -> list[int]:
    """Stop each start whose job ended without finishing it (its worker was killed: jobs.maintenance
    marks such a job errored): it never will, and what it made must not linger."""
    abandoned = InstantRecovery.objects.filter(
        state__in=(InstantRecovery.State.QUEUED, InstantRecovery.State.STARTING), job__status__in=JobRun.FINAL
    )
    stopped = []
    for recovery in abandoned:
        try:
            actions.stop(None, recovery)
        except actions.InstantRefused:  # changed meanwhile
            continue
        stopped.append(recovery.pk)
    return stopped


def retry_failed_stops() -> list[int]:
    """Queue the stop again of each recovery whose stop job ended without stopping it."""
    stuck = InstantRecovery.objects.filter(state=InstantRecovery.State.STOPPING).exclude(
        job__status__in=(JobRun.Status.QUEUED, JobRun.Status.RUNNING)
    )
    retried = []
    for recovery in stuck:
        actions.retry_stop(recovery)
        retried.append(recovery.pk)
    return retried


def is_ours(datastore: vsphere.InstantDatastore) -> bool:
    """Named as this product names them and mounting an export of this machine's NFS server."""
    suffix = datastore.name.removeprefix(PREFIX)
    root = str(Path(settings.INSTANT_DIR).resolve())
    return (
        datastore.name.startswith(PREFIX)
        and suffix.isdigit()
        and datastore.remote_host == settings.INSTANT_NFS_ADDRESS
        and (datastore.remote_path == root or datastore.remote_path.startswith(root + "/"))
    )


def reap_vcenter(conn: vsphere.Connection, vc: VCenter) -> list[str]:
    """Remove this vCenter's datastores of recoveries that are over; the names of those removed."""
    active = set(InstantRecovery.objects.filter(state__in=actions.ACTIVE).values_list("pk", flat=True))
    removed = []
    for datastore in vsphere.instant_datastores(conn, PREFIX):
        if not is_ours(datastore) or int(datastore.name.removeprefix(PREFIX)) in active:
            continue
        try:
            vms = _remove(conn, datastore)
        except vsphere.VCenterError as exc:
            log.warning("leftover datastore %s in %s not removed yet: %s", datastore.name, vc.name, exc)
            continue
        with transaction.atomic():
            record(None, "instant.reap", target=vc, details={
                "datastore": datastore.name, "vms": vms, "instant_recovery": int(datastore.name.removeprefix(PREFIX)),
            })  # fmt: skip
        removed.append(datastore.name)
    return removed


def _remove(conn: vsphere.Connection, datastore: vsphere.InstantDatastore) -> list[str]:
    unregistered = []
    for vm in datastore.vms:
        if vm.vmx_file.startswith(f"[{datastore.name}]"):
            vsphere.power_off_and_unregister(conn, vm.moref)
            unregistered.append(vm.name)
    for host in datastore.host_morefs:
        vsphere.unmount_datastore(conn, host, datastore.moref)
    return unregistered
