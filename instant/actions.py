"""Instant recoveries started, migrated and stopped: one transaction each, with its audit row, then
the job (instant.jobs) that does the vCenter side. Permission checks are the callers'."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import record
from instant.models import InstantRecovery
from inventory import vcenter
from inventory.models import Datastore, Folder, Host, ResourcePool, VirtualMachine
from jobs.models import JobRun
from jobs.runner import enqueue
from vault import archive, pins
from vault.actions import VaultActionError
from vault.models import PointPin, RecoveryPoint

START_KIND = "instant.start"
MIGRATE_KIND = "instant.migrate"
STOP_KIND = "instant.stop"
ACTIVE = (InstantRecovery.State.QUEUED, *InstantRecovery.SERVED)


class InstantRefused(Exception):
    """An instant recovery that cannot start or change; the message says why, nothing was changed."""


def name_in_use(name: str) -> bool:
    """A VM of the inventory, or an instant recovery not over yet, has this name."""
    return (
        VirtualMachine.objects.filter(name=name, removed_at__isnull=True).exists()
        or InstantRecovery.objects.filter(vm_name=name, state__in=ACTIVE).exists()
    )


def end(recovery: InstantRecovery, state: str, **fields: Any) -> None:
    """Put the recovery in a final state and release its pin on the point: the VM no longer reads it
    (stopped, failed, or running from its own datastore), and the supervisor removes the rest."""
    fields = {"state": state, "finished": timezone.now(), **fields}
    for name, value in fields.items():
        setattr(recovery, name, value)
    InstantRecovery.objects.filter(pk=recovery.pk).update(**fields)
    if recovery.pin_id is not None:
        pin = PointPin.objects.filter(pk=recovery.pin_id).first()
        if pin is not None:
            pins.unpin(pin, f"instant recovery {recovery.pk}")


def name_in_use_by_other(recovery: InstantRecovery) -> bool:
    """As name_in_use, not counting the recovery itself."""
    others = InstantRecovery.objects.filter(vm_name=recovery.vm_name, state__in=ACTIVE).exclude(pk=recovery.pk)
    return VirtualMachine.objects.filter(name=recovery.vm_name, removed_at__isnull=True).exists() or others.exists()


def default_host(vm: VirtualMachine) -> Host:
    """The VM's own host, else a connected host of its datacenter."""
    if vm.host is not None:
        return vm.host
    hosts = Host.objects.filter(vcenter_id=vm.vcenter_id)
    if vm.datacenter_id is not None:
        hosts = hosts.filter(datacenter_id=vm.datacenter_id)
    host = hosts.order_by("name").first()
    if host is None:
        raise InstantRefused(f"{vm.name}'s datacenter has no host to run it on: name one.")
    return host


def pool_and_folder(vm: VirtualMachine, host: Host) -> tuple[str, str]:
    pool = vm.resource_pool if vm.host_id == host.pk else None
    if pool is None:  # the root pool of the host's cluster (or of the standalone host)
        owners = [host.cluster.moref] if host.cluster is not None else []
        pools = ResourcePool.objects.filter(vcenter_id=host.vcenter_id, datacenter_id=host.datacenter_id)
        pool = pools.filter(owner_moref__in=owners).order_by("parent_moref", "pk").first() or pools.first()
    if pool is None:
        raise InstantRefused(f"No resource pool of {host.name} is known: sync the inventory first.")
    folder = vm.folder or Folder.objects.filter(datacenter_id=host.datacenter_id, is_root=True).first()
    if folder is None:
        raise InstantRefused(f"No VM folder of {host.name}'s datacenter is known: sync the inventory first.")
    return pool.moref, folder.moref


def start_instant_recovery(
    user: Any,
    point: RecoveryPoint,
    *,
    name: str = "",
    host: Host | None = None,
    connect_network: bool = False,
    network: str = "",
    run_in: JobRun | None = None,
) -> InstantRecovery:
    """Queue the start of a VM from the point, named `name` (default "VM-instant") on `host` (default
    the VM's own), its network adapters disconnected unless `connect_network`. When the original VM is
    gone from vCenter, it comes back as itself: its name by default, and its UUIDs. `network`: connect
    the NICs to that network instead (a restore test's isolated one). `run_in`: the job that runs
    instant.jobs.start itself (a restore test's); by default instant.start is queued."""
    vm = point.vm
    original_gone = vm.removed_at is not None
    name = (name or (vm.name if original_gone else f"{vm.name}-instant")).strip()
    if archive.notice(point) is not None:
        raise InstantRefused(archive.refusal([point], "no instant recovery was started"))
    try:
        vcenter.check_vm_name(name)
    except vcenter.InvalidName as exc:
        raise InstantRefused(f"{name!r} cannot be a VM's name: {exc}.") from None
    if name_in_use(name):
        raise InstantRefused(f"A VM named {name} exists already: choose another name.")
    host = host or default_host(vm)
    pool, folder = pool_and_folder(vm, host)
    with transaction.atomic():
        recovery = InstantRecovery.objects.create(
            point=point,
            point_created=point.created,
            vm_name=name,
            source_vm=vm,
            host_moref=host.moref,
            host_name=host.name,
            folder_moref=folder,
            pool_moref=pool,
            connect_network=connect_network or bool(network),
            network_name=network,
            keep_identity=original_gone,
            requested_by=user if getattr(user, "is_authenticated", False) else None,
        )
        recovery.datastore_name = f"vmb-instant-{recovery.pk}"
        try:
            recovery.pin = pins.pin(point, f"instant recovery {recovery.pk}", user)
        except VaultActionError as exc:
            raise InstantRefused(str(exc)) from None
        recovery.job = run_in or enqueue(
            START_KIND,
            params={"recovery_id": recovery.pk},
            target=vm,
            user=user,
            title=f"Instant recovery of {vm.name} as {name}",
        )
        recovery.save(update_fields=["datastore_name", "job", "pin"])
        record(
            user,
            "instant.start",
            target=vm,
            details={
                "point": str(point.pk),
                "name": name,
                "host": host.name,
                "connect_network": connect_network,
                "instant_recovery": recovery.pk,
            },  # fmt: skip
        )
    return recovery


def migrate(user: Any, recovery: InstantRecovery, datastore: Datastore) -> JobRun:
    """Queue moving the running VM's disks to the datastore, then the NFS datastore's removal."""
    with transaction.atomic():
        claimed = InstantRecovery.objects.filter(pk=recovery.pk, state=InstantRecovery.State.RUNNING).update(
            state=InstantRecovery.State.MIGRATING, target_datastore=datastore.moref, error=""
        )
        if not claimed:
            raise InstantRefused(f"{recovery.vm_name} is not running from backup, so it cannot be migrated.")
        run = enqueue(
            MIGRATE_KIND,
            params={"recovery_id": recovery.pk, "datastore_moref": datastore.moref},
            target=recovery.source_vm,
            user=user,
            title=f"Migrate {recovery.vm_name} to {datastore.name}",
        )
        InstantRecovery.objects.filter(pk=recovery.pk).update(job=run)  # the last job, shown with the row
        details = {"instant_recovery": recovery.pk, "name": recovery.vm_name, "datastore": datastore.name}
        record(user, "instant.migrate", target=recovery.source_vm, details=details)
    return run


def stop(user: Any, recovery: InstantRecovery, run_in: JobRun | None = None) -> JobRun:
    """Queue powering the VM off and removing it, its datastore, export, mount and overlay (`run_in`:
    the job that runs instant.jobs.stop itself instead)."""
    with transaction.atomic():
        # A start whose job ended without finishing it (its worker was killed) is stopped the same way:
        # the job recorded what it made in vCenter as it went.
        stoppable = Q(state__in=(InstantRecovery.State.RUNNING, InstantRecovery.State.STOPPING)) | Q(
            state__in=(InstantRecovery.State.QUEUED, InstantRecovery.State.STARTING), job__status__in=JobRun.FINAL
        )
        claimed = InstantRecovery.objects.filter(stoppable, pk=recovery.pk).update(
            state=InstantRecovery.State.STOPPING, error=""
        )
        if not claimed:
            raise InstantRefused(f"{recovery.vm_name} is not running from backup, so there is nothing to stop.")
        return _queue_stop(user, recovery, run_in)


def retry_stop(recovery: InstantRecovery) -> JobRun:
    """Queue a stop again (the reaper's, after one failed because vCenter could not be reached)."""
    with transaction.atomic():
        return _queue_stop(None, recovery, retry=True)


def _queue_stop(user: Any, recovery: InstantRecovery, run_in: JobRun | None = None, *, retry: bool = False) -> JobRun:
    """The stop's job (or `run_in`) as the row's last job, and its audit row; inside the caller's transaction."""
    run = run_in or enqueue(
        STOP_KIND,
        params={"recovery_id": recovery.pk},
        target=recovery.source_vm,
        user=user,
        title=f"Stop {recovery.vm_name}" + (" (retried)" if retry else ""),
    )
    InstantRecovery.objects.filter(pk=recovery.pk).update(job=run)
    details: dict[str, Any] = {"instant_recovery": recovery.pk, "name": recovery.vm_name}
    if retry:
        details["retry"] = True
    record(user, "instant.stop", target=recovery.source_vm, details=details)
    return run
