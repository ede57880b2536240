"""The protection status report: one row per VM, built from a handful of queries whatever the size
of the inventory (VMs, point aggregates per VM, the newest backup job per VM, RPO states). When each
VM was last proven recoverable and whether it is overdue for a restore test come from the VM's own
fields (proven_at, proof_overdue), which restore_tests keeps, as the VM list shows them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, F, Max, OuterRef, Q
from django.db.models.expressions import Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection.rpo import rpo_states
from protection.scheduling import BACKUP_KIND
from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint, held_in

UNPROTECTED = "unprotected"
DO_NOT_PROTECT = "do not protect"
TEMPLATE = "template"
VM_TYPE = VirtualMachine._meta.label_lower


@dataclass(frozen=True)
class VmStatus:
    vm_id: int
    name: str
    vcenter: str
    folder: str
    group: str  # the group's name, or UNPROTECTED / DO_NOT_PROTECT / TEMPLATE
    in_group: bool
    protected: bool  # in a group and not removed
    removed: bool
    newest_local: dt.datetime | None
    newest_vault: dt.datetime | None
    rpo: str  # RpoState.label for protected VMs; "" otherwise
    breached: bool
    last_job_status: str
    last_job_time: dt.datetime | None
    points: int
    last_proven: dt.datetime | None = None  # the newest restore test that passed
    proof_overdue: bool = False  # not proven within its group's restore test policy

    @property
    def off_site(self) -> bool:
        return self.newest_vault is not None


@dataclass
class Totals:
    vms: int = 0
    protected: int = 0
    unprotected: int = 0
    do_not_protect: int = 0
    templates: int = 0
    removed: int = 0
    breached: int = 0
    not_off_site: int = 0  # protected VMs with no recovery point in the vault
    proven: int = 0  # protected VMs a restore test has proven recoverable
    proof_overdue: int = 0  # protected VMs not proven within their policy


@dataclass
class ProtectionReport:
    generated: dt.datetime
    rows: list[VmStatus] = field(default_factory=list)

    @property
    def totals(self) -> Totals:
        totals = Totals(vms=len(self.rows))
        for row in self.rows:
            if row.removed:
                totals.removed += 1
            elif row.protected:
                totals.protected += 1
                totals.breached += row.breached
                totals.not_off_site += not row.off_site
                totals.proven += row.last_proven is not None
                totals.proof_overdue += row.proof_overdue
            elif row.group == DO_NOT_PROTECT:
                totals.do_not_protect += 1
            elif row.group == TEMPLATE:
                totals.templates += 1
            else:
                totals.unprotected += 1
        return totals


def _point_figures() -> dict[int, Mapping[str, Any]]:
    """Per VM: the newest good point locally and in the vault, and how many points it has."""
    good = Q(damaged=False)
    rows = RecoveryPoint.objects.values("vm_id").annotate(
        points=Count("id"),
        newest_local=Max("created", filter=good & held_in(LOCAL_TIER)),
        newest_vault=Max("created", filter=good & held_in(VAULT_TIER)),
    )
    return {row["vm_id"]: row for row in rows}


def _last_backup_jobs() -> dict[str, Mapping[str, Any]]:
    """The newest backup job of every VM, by VM id as text (one query with a window function)."""
    rows = (
        JobRun.objects.filter(kind=BACKUP_KIND, target_type=VM_TYPE)
        .annotate(rank=Window(RowNumber(), partition_by=[F("target_id")], order_by=[F("created").desc()]))
        .filter(rank=1)
        .values("target_id", "status", "created", "started", "finished")
    )
    return {row["target_id"]: row for row in rows}


def _vms():
    """Every VM vCenter has, and the removed ones that still have recovery points."""
    has_points = Exists(RecoveryPoint.objects.filter(vm=OuterRef("pk")))
    return (
        VirtualMachine.objects.filter(Q(removed_at__isnull=True) | has_points)
        .order_by("vcenter__name", "path", "pk")
        .values(
            "pk",
            "name",
            "path",
            "vcenter__name",
            "folder__path",
            "protection_group__name",
            "do_not_protect",
            "is_template",
            "removed_at",
            "proven_at",
            "proof_overdue",
        )
    )


def protection_report(now: dt.datetime | None = None) -> ProtectionReport:
    now = now or timezone.now()
    states = rpo_states(now)
    points = _point_figures()
    jobs = _last_backup_jobs()
    report = ProtectionReport(generated=now)
    for vm in _vms().iterator(chunk_size=2000):
        group = vm["protection_group__name"]
        removed = vm["removed_at"] is not None
        label = group or (DO_NOT_PROTECT if vm["do_not_protect"] else TEMPLATE if vm["is_template"] else UNPROTECTED)
        state = states.get(vm["pk"])
        figures = points.get(vm["pk"], {})
        job = jobs.get(str(vm["pk"]))
        report.rows.append(
            VmStatus(
                vm_id=vm["pk"],
                name=vm["name"],
                vcenter=vm["vcenter__name"],
                folder=vm["folder__path"] or vm["path"].rpartition("/")[0],
                group=label,
                in_group=bool(group),
                protected=bool(group) and not removed,
                removed=removed,
                newest_local=figures.get("newest_local"),
                newest_vault=figures.get("newest_vault"),
                rpo="removed" if removed else (state.label if state else ""),
                breached=bool(state and state.breached),
                last_job_status=job["status"] if job else "",
                last_job_time=(job["finished"] or job["started"] or job["created"]) if job else None,
                points=figures.get("points", 0),
                last_proven=vm["proven_at"],
                proof_overdue=vm["proof_overdue"] and bool(group) and not removed,
            )
        )
    return report


CSV_HEADER = [
    "VM",
    "vCenter",
    "Folder",
    "Protection group",
    "Removed",
    "Newest local point",
    "Newest vault point",
    "RPO",
    "Last backup job",
    "Last backup job time",
    "Points",
    "Last proven",
    "Proof overdue",
]
TIMES = {"Newest local point", "Newest vault point", "Last backup job time", "Last proven"}


def csv_header() -> list[str]:
    tz = timezone.get_current_timezone_name()
    return [f"{h} ({tz})" if h in TIMES else h for h in CSV_HEADER]


def csv_rows(report: ProtectionReport) -> Iterator[list[Any]]:
    for row in report.rows:
        yield [
            row.name,
            row.vcenter,
            row.folder,
            row.group,
            "removed" if row.removed else "",
            row.newest_local,
            row.newest_vault,
            row.rpo,
            row.last_job_status,
            row.last_job_time,
            row.points,
            row.last_proven,
            "overdue" if row.proof_overdue else "",
        ]
