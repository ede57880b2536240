"""Catalog job kinds: `recovery.catalog_vm` (queued after each backup, for the VM) catalogues the
VM's points not yet in the catalog, oldest first; `recovery.catalog_backfill` (at worker start and
`manage.py catalog backfill`) does so for every VM.

Only points in the local store are read: a point held only in the vault is marked "not catalogued"
rather than rehydrated, because cataloguing must never start a paid action."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction

from inventory.models import VirtualMachine
from jobs.models import JobRun
from jobs.registry import job_kind
from jobs.runner import JobContext, enqueue
from recovery import browse
from recovery.catalog import walk
from recovery.catalog.writer import OutOfOrder, catalogue_point, mark_unavailable
from recovery.models import CatalogPoint, CatalogVolume
from vault import engine
from vault.models import RecoveryPoint

log = logging.getLogger(__name__)

CATALOG_VM_KIND = "recovery.catalog_vm"
BACKFILL_KIND = "recovery.catalog_backfill"
NOT_LOCAL = "Held only in the vault: not catalogued (reading it could start a paid rehydration)."


def pending_points(vm_id: int) -> list[RecoveryPoint]:
    return list(
        RecoveryPoint.objects.filter(vm_id=vm_id, catalog__isnull=True).select_related("vm").order_by("created")
    )


def vms_with_pending_points() -> list[int]:
    return list(
        RecoveryPoint.objects.filter(catalog__isnull=True).values_list("vm_id", flat=True).distinct().order_by("vm_id")
    )


def enqueue_catalog(vm: VirtualMachine, *, user: Any = None) -> JobRun | None:
    """Queue the VM's catalog job unless one is already waiting (a running one may have missed the
    newest point, so it does not count)."""
    waiting = JobRun.objects.filter(kind=CATALOG_VM_KIND, status=JobRun.Status.QUEUED, params__vm_id=vm.pk)
    if waiting.exists():
        return None
    return enqueue(CATALOG_VM_KIND, params={"vm_id": vm.pk}, target=vm, user=user)


def catalogue_vm(ctx: JobContext | None, vm_id: int) -> dict[str, int]:
    """Catalogue the VM's pending points in order; a pending point older than a catalogued one (adopted
    by the reconciler, say) makes the VM's catalog be rebuilt from its oldest point."""
    points = pending_points(vm_id)
    newest = CatalogPoint.objects.filter(vm_id=vm_id, seq__isnull=False).select_related("point").order_by("-seq")
    head = newest.first()
    if points and head is not None and points[0].created <= head.point.created:
        forget_vm(vm_id)
        points = pending_points(vm_id)
    done = {"points": 0, "entries": 0, "new_versions": 0}
    for point in points:
        if ctx is not None:
            ctx.check_cancelled()
        outcome = catalogue_one(point)
        if outcome is not None:
            done["points"] += 1
            done["entries"] += outcome.entries
            done["new_versions"] += outcome.new_versions
            if ctx is not None:
                ctx.log(f"{point}: {outcome.entries} entries, {outcome.new_versions} new versions.")
    return done


def catalogue_one(point: RecoveryPoint) -> Any:
    if not point.local:
        mark_unavailable(point, NOT_LOCAL)
        return None
    problems: list[str] = []
    try:
        return catalogue_point(point, walk.point_listings(point, problems), problems=problems)
    except (browse.PointUnavailable, engine.StoreError, engine.BackendError) as exc:
        mark_unavailable(point, f"Could not be read: {exc}")
    except IntegrityError:  # deleted meanwhile, or catalogued by another job
        pass
    except OutOfOrder:  # an older point arrived meanwhile: the next run rebuilds
        pass
    except Exception as exc:  # a parser failing on a damaged volume must not hold back the VM's later points
        log.exception("catalog: %s could not be catalogued", point)
        mark_unavailable(point, f"Could not be catalogued: {exc}")
    return None


def forget_vm(vm_id: int) -> None:
    """Drop the VM's whole catalog (to be written again in order)."""
    with transaction.atomic():
        CatalogVolume.objects.filter(vm_id=vm_id).delete()
        CatalogPoint.objects.filter(vm_id=vm_id).delete()


@job_kind(CATALOG_VM_KIND, title="Catalogue a VM's files", queue="vault")
def catalog_vm(ctx: JobContext, vm_id: int) -> dict[str, Any]:
    return catalogue_vm(ctx, vm_id)


@job_kind(BACKFILL_KIND, title="Catalogue the files of existing recovery points", queue="vault")
def catalog_backfill(ctx: JobContext) -> dict[str, Any]:
    vm_ids = vms_with_pending_points()
    ctx.set_total(len(vm_ids))
    totals = {"vms": 0, "points": 0, "entries": 0, "new_versions": 0}
    for done, vm_id in enumerate(vm_ids, start=1):
        ctx.check_cancelled()
        outcome = catalogue_vm(ctx, vm_id)
        totals["vms"] += 1
        for key in ("points", "entries", "new_versions"):
            totals[key] += outcome[key]
        ctx.progress(done)
    return totals


def enqueue_nightly_backfill() -> None:
    """From cron: catalogue what no backup job catalogued (points the reconciler adopted, a catalog
    job that failed), unless a backfill is already queued or running."""
    if not JobRun.objects.filter(kind=BACKFILL_KIND, status__in=JobRun.ACTIVE).exists():
        enqueue(BACKFILL_KIND)
