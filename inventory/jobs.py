"""Background jobs of the inventory app."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.actions import SYNC_KIND
from inventory.connection import open_connection
from inventory.models import VCenter
from inventory.sync import apply_inventory
from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed


@job_kind(SYNC_KIND, title="Inventory sync")
def sync_inventory(ctx: JobContext, vcenter_id: int) -> dict[str, Any]:
    """Read the whole inventory in a few round trips, then write it in one transaction."""
    try:
        vc = VCenter.objects.get(pk=vcenter_id)
    except VCenter.DoesNotExist:
        raise JobFailed("The vCenter connection was removed before the sync ran.") from None
    ctx.set_total(2)
    started = timezone.now()
    try:
        with open_connection(vc) as conn:
            ctx.log(f"Connected to {vc.name} ({vc.host}:{vc.port}).")
            inventory = vsphere.fetch_inventory(conn)
    except vsphere.VCenterError as exc:
        VCenter.objects.filter(pk=vc.pk).update(last_sync_error=str(exc))
        raise JobFailed(str(exc)) from None
    ctx.log(
        f"Read {len(inventory.vms)} VMs, {len(inventory.folders)} folders, {len(inventory.hosts)} hosts and "
        f"{len(inventory.datastores)} datastores in {inventory.round_trips} round trips."
    )
    ctx.advance()
    ctx.check_cancelled()
    result = apply_inventory(vc, inventory)
    ctx.advance()
    for warning in result.warnings:
        ctx.log(warning, level="warning")
    ctx.log(
        f"{result.vms_new} new, {result.vms_removed} removed; {result.joined} joined a protection group "
        f"({(timezone.now() - started).total_seconds():.1f} s)."
    )
    # Every sync also looks for backup snapshots a killed worker left behind.
    from jobs.runner import enqueue

    enqueue("protection.cleanup_snapshots", params={"vcenter_id": vc.pk}, target=vc)
    return {"vms": result.vms_seen, "new": result.vms_new, "removed": result.vms_removed, "joined": result.joined}
