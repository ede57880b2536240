"""The overview's numbers: protection, the last day of backups, RPO, off-site copies, storage and its
growth. A fixed handful of queries whatever the inventory's size; storage comes from the hourly
sample (walking a large store on every page load would be slow)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from inventory.models import VirtualMachine
from inventory.queries import unprotected_count
from jobs.models import JobRun
from protection.rpo import rpo_states
from protection.scheduling import BACKUP_KIND
from recovery import access
from vault import actions as vault_actions
from vault.models import RecoveryPoint, StorageSample, VaultSettings
from vault.queries import ratios as vault_ratios

CHART_DAYS = 30
CHART_WIDTH, CHART_HEIGHT = 600, 140


@dataclass
class Growth:
    """A server-rendered line chart: SVG polyline points for local and vault bytes per day."""

    days: list[StorageSample] = field(default_factory=list)
    local_points: str = ""
    vault_points: str = ""
    top: int = 0

    @property
    def first(self) -> StorageSample | None:
        return self.days[0] if self.days else None

    @property
    def last(self) -> StorageSample | None:
        return self.days[-1] if self.days else None


def growth(today: dt.date | None = None) -> Growth:
    today = today or timezone.localdate()
    days = list(StorageSample.objects.filter(day__gt=today - dt.timedelta(days=CHART_DAYS)).order_by("day"))
    chart = Growth(days)
    if not days:
        return chart
    chart.top = max(max(s.local_bytes, s.vault_bytes) for s in days) or 1

    def points(values: list[int]) -> str:
        coords = []
        for sample, value in zip(days, values, strict=True):
            x = (CHART_DAYS - 1 - (today - sample.day).days) * CHART_WIDTH / (CHART_DAYS - 1)
            y = CHART_HEIGHT - value * CHART_HEIGHT / chart.top
            coords.append(f"{x:.1f},{y:.1f}")
        return " ".join(coords)

    chart.local_points = points([s.local_bytes for s in days])
    chart.vault_points = points([s.vault_bytes for s in days])
    return chart


def overview(now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    protected = Q(removed_at__isnull=True, protection_group__isnull=False)
    vms = VirtualMachine.objects.aggregate(
        protected=Count("pk", filter=protected),
        proven=Count("pk", filter=protected & Q(proven_at__isnull=False)),  # kept by restore_tests
        proof_overdue=Count("pk", filter=protected & Q(proof_overdue=True)),
        removed=Count("pk", filter=Q(removed_at__isnull=False)),
        total=Count("pk", filter=Q(removed_at__isnull=True)),
    )
    backups = JobRun.objects.filter(kind=BACKUP_KIND, created__gte=now - dt.timedelta(hours=24)).aggregate(
        succeeded=Count("pk", filter=Q(status=JobRun.Status.SUCCEEDED)),
        failed=Count("pk", filter=Q(status__in=[JobRun.Status.FAILED, JobRun.Status.ERRORED])),
        running=Count("pk", filter=Q(status__in=[JobRun.Status.RUNNING, JobRun.Status.QUEUED])),
    )
    states = rpo_states(now)
    breached_ids = [vm_id for vm_id, state in states.items() if state.breached]
    breached = list(VirtualMachine.objects.filter(pk__in=breached_ids).order_by("name")[:10])
    config = VaultSettings.current()
    backlog = vault_actions.replication_backlog() if config.enabled else []
    latest = StorageSample.objects.order_by("-day").first()
    dedup, compression = vault_ratios()
    return {
        "vm_total": vms["total"],
        "protected": vms["protected"],
        "proven": vms["proven"],
        "proof_overdue": vms["proof_overdue"],
        "unprotected": unprotected_count(),
        "removed": vms["removed"],
        "backups": backups,
        "rpo_breached": len(breached_ids),
        "rpo_examples": [(vm, states[vm.pk]) for vm in breached],
        "vault_enabled": config.enabled,
        "not_offsite": len(backlog),
        "oldest_not_offsite": backlog[0] if backlog else None,
        "points": RecoveryPoint.objects.count(),
        "storage": latest,
        "ratio": (latest.logical_bytes / latest.local_bytes) if latest and latest.local_bytes else None,
        "dedup_ratio": dedup,
        "compression_ratio": compression,
        "growth": growth(timezone.localdate(now)),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
    }


def restore_operator_overview(user: Any) -> dict:
    """The overview of someone who sees only the VMs granted to them (a restore operator): their VMs,
    their points and their own restores, never figures about the rest of the estate."""
    points = access.visible_points(user)
    return {
        "no_grants": access.lacks_grants(user),
        "my_vm_count": access.vms_with_points(user).count(),
        "my_point_count": points.count(),
        "latest_points": list(points.select_related("vm").order_by("-created")[:5]),
        "recent_restores": list(access.visible_restores(user).order_by("-created")[:5]),
    }
