"""The vCenter side of an instant recovery (the data path is instant.supervisor's):

- instant.start: refused up front (a point not readable whole, privileges missing, the name taken);
  then the supervisor is asked to serve the point (state starting) and the job waits for the export,
  mounts it as an NFS datastore on the host, registers the VM from its .vmx and powers it on
  (running). Any failure undoes what was done, in reverse, and the state failed has the supervisor
  remove the export, the mount and the overlay: nothing is left behind.
- instant.migrate: storage vMotion to a production datastore, then the NFS datastore unmounted
  (finished: the supervisor removes the rest).
- instant.stop: powered off and unregistered, the datastore unmounted (stopped). When vCenter cannot be
  reached it stays stopping and instant.reaper queues it again.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from instant import actions, supervisor
from instant.models import InstantRecovery
from instant.view.layout import vmx_quote
from instant.view.source import Unservable, open_point
from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import VCenter
from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed
from vault.storage import tiered_store

State = InstantRecovery.State
RETRY_MINUTES = 5  # config.cron runs instant.reaper this often
READY_TIMEOUT = 120.0  # seconds the start waits for the supervisor to serve and export the point
_UUID_LINE = re.compile(r"^(vc\.uuid|uuid\.bios)\s*=", re.IGNORECASE)
_NIC_NETWORK = re.compile(r"^(ethernet\d+\.networkName) = \".*\"$", re.MULTILINE)
_NIC_OFF = re.compile(r'^(ethernet\d+\.startConnected) = "FALSE"$', re.MULTILINE)


def _set(recovery: InstantRecovery, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(recovery, name, value)
    InstantRecovery.objects.filter(pk=recovery.pk).update(**fields)


@job_kind(actions.START_KIND, title="Instant recovery", queue="restore")
def start(ctx: JobContext, recovery_id: int) -> dict[str, Any]:
    recovery = InstantRecovery.objects.select_related("point__vm__vcenter").get(pk=recovery_id)
    try:
        _refuse_if_unservable(recovery)
        with open_connection(_vcenter(recovery)) as conn:
            _refuse_without_privileges(conn, recovery)
            _set(recovery, state=State.STARTING)
            ctx.log("Serving the point over NFS.")
            _wait_until_served(recovery)
            try:
                _start_vm(ctx, conn, recovery)
            except BaseException:
                try:
                    _undo(ctx, conn, recovery)
                except vsphere.VCenterError as undo_failed:  # the first failure is the one to report
                    ctx.log(f"Could not remove what the start made in vCenter: {undo_failed}", level="error")
                raise
    except (JobFailed, vsphere.VCenterError, Unservable) as exc:
        message = str(exc)
        actions.end(recovery, State.FAILED, error=message)
        raise JobFailed(f"The instant recovery {recovery.vm_name} failed: {message}") from None
    except BaseException as exc:
        actions.end(recovery, State.FAILED, error=str(exc) or type(exc).__name__)
        raise
    _set(recovery, state=State.RUNNING)
    ctx.log(f"{recovery.vm_name} is powered on, running from the backup on datastore {recovery.datastore_name}.")
    return {"vm": recovery.vm_name, "moref": recovery.vm_moref, "datastore": recovery.datastore_name}


def _vcenter(recovery: InstantRecovery) -> VCenter:
    if recovery.point is None:  # pinned while active, so only a row edited by hand
        raise JobFailed("Its recovery point no longer exists.")
    return recovery.point.vm.vcenter


def _refuse_if_unservable(recovery: InstantRecovery) -> None:
    if actions.name_in_use_by_other(recovery):
        raise JobFailed(f"A VM named {recovery.vm_name} exists already; nothing was started.")
    open_point(tiered_store(), str(recovery.point_id))  # Unservable: archived or missing chunks


def _refuse_without_privileges(conn: vsphere.Connection, recovery: InstantRecovery) -> None:
    missing = vsphere.missing_privileges(conn, recovery.host_moref, recovery.folder_moref, recovery.pool_moref)
    if missing.privileges:
        raise JobFailed(f"{missing.sentence[0].upper()}{missing.sentence[1:]}; nothing was started.")


def _wait_until_served(recovery: InstantRecovery) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        recovery.refresh_from_db()
        if recovery.error:
            raise JobFailed(recovery.error)
        if supervisor.is_ready(recovery):
            return
        if time.monotonic() > deadline:
            raise JobFailed(
                f"The point was not served within {READY_TIMEOUT:.0f} s: is `manage.py instant-supervisor` "
                "running (make run starts it)?"
            )
        time.sleep(0.2)


def _vmx_name(recovery: InstantRecovery) -> str:
    names = sorted(p.name for p in recovery.export_path.glob("*.vmx"))
    if not names:
        raise JobFailed("The point has no captured VM configuration (.vmx), so no VM can be registered from it.")
    return names[0]


def _start_vm(ctx: JobContext, conn: vsphere.Connection, recovery: InstantRecovery) -> None:
    vmx = _vmx_name(recovery)
    path = recovery.export_path / vmx  # changed through the mount: it lands in the overlay, not the point
    if recovery.connect_network:
        path.write_text(_NIC_OFF.sub(r'\1 = "TRUE"', path.read_text()))
    if recovery.network_name:  # an isolated network instead of the NICs' own (a restore test's)
        name = vmx_quote(recovery.network_name)
        path.write_text(_NIC_NETWORK.sub(lambda m: f'{m[1]} = "{name}"', path.read_text()))
    if recovery.keep_identity:
        _keep_identity(ctx, conn, recovery, path)
    name = recovery.datastore_name or f"vmb-instant-{recovery.pk}"
    ds = vsphere.mount_nas_datastore(
        conn, recovery.host_moref, name, settings.INSTANT_NFS_ADDRESS, str(recovery.export_path)
    )
    _set(recovery, datastore_moref=ds.moref)
    ctx.log(f"Mounted the export as datastore {ds.name} on {recovery.host_name}.")
    vm = vsphere.register_vm(
        conn, ds.name, vmx, vsphere.check_vm_name(recovery.vm_name), recovery.folder_moref, recovery.pool_moref,
        recovery.host_moref,
    )  # fmt: skip
    _set(recovery, vm_moref=vm.moref)
    ctx.log(f"Registered {vm.name}.")
    vsphere.power_on(conn, vm.moref)


def _keep_identity(ctx: JobContext, conn: vsphere.Connection, recovery: InstantRecovery, vmx: Path) -> None:
    """The original is gone: give the VM its UUIDs back (vc.uuid, uuid.bios), unless vCenter has a VM
    with its instance UUID again, which keeps a copy from posing as it."""
    config = recovery.point.config if recovery.point is not None else {}
    instance, bios = str(config.get("instance_uuid") or ""), str(config.get("bios_uuid") or "")
    if not instance:
        return
    if vsphere.vm_with_instance_uuid(conn, instance) is not None:
        ctx.log("The original VM is in vCenter again: this one gets new UUIDs, as a copy.")
        return
    lines = [f'vc.uuid = "{_vmx_uuid(instance)}"'] + ([f'uuid.bios = "{_vmx_uuid(bios)}"'] if bios else [])
    text = "".join(line for line in vmx.read_text().splitlines(keepends=True) if not _UUID_LINE.match(line))
    vmx.write_text(text + "".join(f"{line}\n" for line in lines))
    ctx.log(f"The original VM is gone: {recovery.vm_name} keeps its instance UUID {instance}.")


def _vmx_uuid(value: str) -> str:
    """ "421c6f3e-8a1b-4c2d-9e8f-7a6b5c4d3e2f" as a .vmx writes it: "42 1c 6f 3e 8a 1b 4c 2d-9e 8f ..."."""
    raw = value.replace("-", "").lower()
    pairs = [raw[i : i + 2] for i in range(0, 32, 2)]
    return " ".join(pairs[:8]) + "-" + " ".join(pairs[8:])


def _undo(ctx: JobContext, conn: vsphere.Connection, recovery: InstantRecovery) -> None:
    """Remove what the start made in vCenter, newest first; the supervisor removes the rest."""
    if recovery.vm_moref:
        vsphere.power_off_and_unregister(conn, recovery.vm_moref)
        _set(recovery, vm_moref="")
        ctx.log("Unregistered the VM again.")
    if recovery.datastore_moref:
        vsphere.unmount_datastore(conn, recovery.host_moref, recovery.datastore_moref)
        _set(recovery, datastore_moref="")
        ctx.log("Unmounted the datastore again.")


@job_kind(actions.MIGRATE_KIND, title="Migrate an instant recovery", queue="restore")
def migrate(ctx: JobContext, recovery_id: int, datastore_moref: str) -> dict[str, Any]:
    recovery = InstantRecovery.objects.select_related("point__vm__vcenter").get(pk=recovery_id)
    try:
        with open_connection(_vcenter(recovery)) as conn:
            ctx.log("Moving the disks (storage vMotion).")
            moved = vsphere.relocate_disks(conn, recovery.vm_moref, datastore_moref)
            vsphere.unmount_datastore(conn, recovery.host_moref, recovery.datastore_moref)
    except vsphere.VCenterError as exc:
        _set(recovery, state=State.RUNNING, error=str(exc))
        raise JobFailed(f"{recovery.vm_name} was not migrated and runs from the backup still: {exc}") from None
    actions.end(recovery, State.FINISHED, datastore_moref="")
    ctx.log(f"{recovery.vm_name} runs from {moved.vmx_file.split(']')[0].lstrip('[')} now.")
    return {"vm": recovery.vm_name, "vmx": moved.vmx_file, "disks": list(moved.disk_files)}


@job_kind(actions.STOP_KIND, title="Stop an instant recovery", queue="restore")
def stop(ctx: JobContext, recovery_id: int) -> dict[str, Any]:
    recovery = InstantRecovery.objects.select_related("point__vm__vcenter").get(pk=recovery_id)
    try:
        with open_connection(_vcenter(recovery)) as conn:
            _undo(ctx, conn, recovery)
    except vsphere.VCenterError as exc:
        # Still stopping (and still served: the VM may run on): instant.reaper queues the stop again.
        _set(recovery, error=f"{exc}; the stop is retried every {RETRY_MINUTES} minutes")
        raise JobFailed(
            f"{recovery.vm_name} was not stopped yet: {exc}. The stop is retried every {RETRY_MINUTES} minutes."
        ) from None
    actions.end(recovery, State.STOPPED, error="")
    return {"vm": recovery.vm_name}
