"""Background jobs of the vault app: verification of recovery points."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed
from protection.backup import store
from vault import engine
from vault.models import RecoveryPoint

VERIFY_KIND = "vault.verify"


@job_kind(VERIFY_KIND, title="Verify recovery points", queue="maintenance")
def verify(ctx: JobContext, point_ids: list[str]) -> dict[str, Any]:
    """Re-read every chunk of the points, decompress and re-hash; mark damaged points and name their VMs."""
    st = store()
    points = list(RecoveryPoint.objects.filter(pk__in=point_ids, local=True).select_related("vm"))
    ctx.set_total(len(points), "points")
    damaged = []
    for point in points:
        ctx.check_cancelled()
        try:
            report = engine.verify_point(st, str(point.pk))
            problems = [str(problem) for problem in report.problems]
            problems += [f"disk {d.disk_key}: {d.index_error}" for d in report.disks.values() if d.index_error]
        except engine.StoreError as exc:
            problems = [str(exc)]
        RecoveryPoint.objects.filter(pk=point.pk).update(
            verified_at=timezone.now(), damaged=bool(problems), damage=problems[:100]
        )
        if problems:
            damaged.append(point)
            ctx.log(f"{point.vm.name} {point.created:%Y-%m-%d %H:%M}: DAMAGED — {problems[0]}", level="error")
        else:
            ctx.log(f"{point.vm.name} {point.created:%Y-%m-%d %H:%M}: intact.")
        ctx.advance()
    if damaged:
        vms = sorted({point.vm.name for point in damaged})
        raise JobFailed(f"{len(damaged)} damaged recovery point(s); VMs affected: {', '.join(vms)}.")
    return {"verified": len(points)}
