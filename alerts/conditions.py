"""What is wrong right now: one check per alert kind, each reading the database (or the disk) and
returning `Finding`s. `alerts.evaluation` turns the findings into opened, refreshed and resolved alerts.

A check only reports; it never changes anything. Checks are registered with `@check(kind)`, so adding
a kind is one function here and one choice in `Alert.Kind`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat, pluralize
from django.utils import timezone

from alerts.models import Alert
from instant.models import InstantRecovery
from inventory.models import VCenter, VirtualMachine
from jobs.models import JobRun
from protection.jobs import CLEANUP_KIND
from protection.models import SnapshotCleanup
from protection.rpo import rpo_states
from protection.scheduling import BACKUP_KIND
from restore_tests.models import RestoreTest
from restore_tests.queries import overdue
from vault.actions import replication_backlog
from vault.models import RecoveryPoint, VaultSettings
from vault.usage import local_store_bytes

Kind = Alert.Kind
Severity = Alert.Severity
Status = JobRun.Status
VM_TYPE = "inventory.virtualmachine"
# At or above this share of the store in use, "nearly full" becomes critical.
STORE_CRITICAL_PERCENT = 98


@dataclass(frozen=True)
class Finding:
    """One thing that is wrong now; (kind, key) says which alert it belongs to."""

    kind: str
    key: str
    severity: str
    title: str
    detail: str = ""
    target_type: str = ""
    target_id: str = ""
    target_label: str = ""
    job_id: str | None = None


def about_vm(kind: str, vm: VirtualMachine, severity: str, title: str, detail: str, **extra: str | None) -> Finding:
    return Finding(kind, str(vm.pk), severity, title, detail, VM_TYPE, str(vm.pk), vm.name, **extra)


Check = Callable[[dt.datetime], Iterable[Finding]]
CHECKS: dict[str, Check] = {}


def check(kind: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[kind] = function
        return function

    return register


def when(moment: dt.datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "never"


def _protected_vms(ids: Iterable[int | str]) -> dict[int, VirtualMachine]:
    """The VMs among `ids` that vCenter still has and a group protects: a VM nobody protects any more
    raises no backup alerts."""
    pks = [int(pk) for pk in ids if str(pk).isdigit()]
    return VirtualMachine.objects.filter(removed_at__isnull=True, protection_group__isnull=False).in_bulk(pks)


@check(Kind.FAILED_BACKUP)
def failed_backups(now: dt.datetime) -> Iterable[Finding]:
    """The newest finished backup of a VM failed or errored (cancelled ones count neither way)."""
    bad = (Status.FAILED, Status.ERRORED)
    ended = Coalesce("finished", "created")
    backups = JobRun.objects.filter(kind=BACKUP_KIND, target_type=VM_TYPE)
    newest = (
        backups.filter(status__in=(*bad, Status.SUCCEEDED))
        .values("target_id")
        .annotate(last_ok=Max(ended, filter=Q(status=Status.SUCCEEDED)), last_bad=Max(ended, filter=Q(status__in=bad)))
    )
    failing = {
        row["target_id"]: row["last_bad"]
        for row in newest
        if row["last_bad"] is not None and (row["last_ok"] is None or row["last_bad"] > row["last_ok"])
    }
    vms = _protected_vms(failing)
    if not vms:
        return []
    keys = [str(pk) for pk in vms]
    runs = (
        backups.filter(status__in=bad, target_id__in=keys)
        .annotate(ended=ended)
        .filter(ended__gte=min(failing[key] for key in keys))
        .only("pk", "target_id", "error")
    )
    last_run = {run.target_id: run for run in runs if run.ended == failing[run.target_id]}
    findings = []
    for key in keys:
        vm, run = vms[int(key)], last_run.get(key)
        error = (run.error if run else "") or "the job ended without a message."
        findings.append(
            about_vm(
                Kind.FAILED_BACKUP,
                vm,
                Severity.CRITICAL,
                f"Backup of {vm.name} failed",
                f"The last backup of {vm.name}, which ended {when(failing[key])}, did not succeed: {error}",
                job_id=str(run.pk) if run else None,
            )
        )
    return findings


@check(Kind.RPO_BREACH)
def rpo_breaches(now: dt.datetime) -> Iterable[Finding]:
    """A schedule slot passed (with its grace) and the VM has no good point since (protection.rpo)."""
    breached = {state.vm_id: state for state in rpo_states(now).values() if state.breached}
    findings = []
    for pk, vm in VirtualMachine.objects.in_bulk(list(breached)).items():
        state = breached[pk]
        newest = (
            f"the newest good point is from {when(state.newest_good)}" if state.newest_good else "it has no good point"
        )
        findings.append(
            about_vm(
                Kind.RPO_BREACH,
                vm,
                Severity.CRITICAL,
                f"{vm.name} missed its recovery point objective",
                f"No good recovery point since the scheduled backup of {when(state.due_slot)}; {newest}.",
            )
        )
    return findings


@check(Kind.ORPHANED_SNAPSHOT)
def leftover_snapshots(now: dt.datetime) -> Iterable[Finding]:
    """The snapshot cleanup (protection.cleanup_snapshots) found leftovers of ours on a VM, removed or not.

    The cleanup keeps its newest outcome per VM where it found some (`SnapshotCleanup`). The alert stays
    open until a cleanup that started later succeeded on the VM's vCenter without writing a new outcome
    for it: a clean run either checked the VM and found nothing, or vCenter reported no snapshots on it.
    """
    outcomes = list(SnapshotCleanup.objects.filter(vm__removed_at__isnull=True).select_related("vm"))
    last_clean = _last_clean_runs({outcome.vm.vcenter_id for outcome in outcomes})
    findings = []
    for outcome in outcomes:
        vm, checked = outcome.vm, outcome.checked_at
        # The outcome's own cleanup started before it wrote the outcome, so it never counts as "later".
        clean_since = last_clean[vm.vcenter_id]
        if clean_since and clean_since > checked:
            continue
        if outcome.outcome == SnapshotCleanup.Outcome.REMOVED:
            count = outcome.removed
            severity = Severity.WARNING
            title = f"Leftover backup snapshots were found on {vm.name}"
            detail = (
                f"The cleanup of {when(checked)} removed {count} backup snapshot{pluralize(count)} that a "
                "backup left behind (a worker stopped, or vCenter did not remove it). It closes after a later "
                "cleanup finds none."
            )
        else:
            severity = Severity.CRITICAL
            title = f"A leftover backup snapshot on {vm.name} could not be removed"
            detail = (
                f"The cleanup of {when(checked)} could not check or remove our snapshots on {vm.name}: "
                f"{outcome.error or 'no reason given'}. Snapshots left in place grow on the datastore."
            )
        findings.append(about_vm(Kind.ORPHANED_SNAPSHOT, vm, severity, title, detail, job_id=str(outcome.job)))
    return findings


def _last_clean_runs(vcenter_ids: set[int]) -> dict[int, dt.datetime | None]:
    """When the newest successful cleanup that covered each vCenter started (all vCenters, or that one)."""
    cleanups = JobRun.objects.filter(kind=CLEANUP_KIND, status=Status.SUCCEEDED)
    every_vcenter = Q(params__vcenter_id=None) | ~Q(params__has_key="vcenter_id")
    for_all = cleanups.filter(every_vcenter).aggregate(last=Max("started"))["last"]
    result = {}
    for pk in vcenter_ids:
        for_one = cleanups.filter(params__vcenter_id=pk).aggregate(last=Max("started"))["last"]
        result[pk] = max((t for t in (for_all, for_one) if t), default=None)
    return result


@check(Kind.REPLICATION_LAG)
def replication_lag(now: dt.datetime) -> Iterable[Finding]:
    """The oldest point waiting for the vault is older than REPLICATION_LAG_HOURS (as the Vault page counts)."""
    if not VaultSettings.current().enabled:
        return []
    backlog = replication_backlog()
    limit = dt.timedelta(hours=settings.REPLICATION_LAG_HOURS)
    if not backlog or now - backlog[0].created <= limit:
        return []
    oldest = backlog[0]
    hours = int((now - oldest.created).total_seconds() // 3600)
    return [
        Finding(
            Kind.REPLICATION_LAG,
            "vault",
            Severity.WARNING,
            f"Replication to the vault is more than {settings.REPLICATION_LAG_HOURS} hours behind",
            f"{len(backlog)} recovery point{pluralize(len(backlog))} wait for the vault; the oldest, "
            f"{oldest.vm.name} from {when(oldest.created)}, has waited {hours} hours.",
            "vault",
            "",
            "Vault",
        )
    ]


@check(Kind.DAMAGED_POINT)
def damaged_points(now: dt.datetime) -> Iterable[Finding]:
    """Damaged recovery points (found by verify, a restore's check or a replication); the alert closes
    once they are repaired (from the other tier, or by the next backup rewriting the bad chunks) or deleted."""
    rows = {
        row["vm"]: row
        for row in RecoveryPoint.objects.filter(damaged=True)
        .values("vm")
        .annotate(n=Count("pk"), newest=Max("created"))
    }
    findings = []
    for pk, vm in VirtualMachine.objects.in_bulk(list(rows)).items():
        n, newest = rows[pk]["n"], rows[pk]["newest"]
        findings.append(
            about_vm(
                Kind.DAMAGED_POINT,
                vm,
                Severity.CRITICAL,
                f"{vm.name} has damaged recovery points" if n > 1 else f"{vm.name} has a damaged recovery point",
                f"Verification found {n} damaged recovery point{pluralize(n)} of {vm.name} (the newest from "
                f"{when(newest)}). Restores from them may fail. Run `manage.py vault repair` (or Repair on the Vault "
                "page) to bring bad chunks back from the other tier; the next backup of the VM rewrites the rest.",
            )
        )
    return findings


@check(Kind.VCENTER_UNREACHABLE)
def unreachable_vcenters(now: dt.datetime) -> Iterable[Finding]:
    """The last inventory sync or the live watcher could not talk to the vCenter."""
    return [
        Finding(
            Kind.VCENTER_UNREACHABLE,
            str(vc.pk),
            Severity.CRITICAL,
            f"vCenter {vc.name} is unreachable",
            f"The last attempt to read the inventory of {vc.name} ({vc.host}) failed: {vc.last_sync_error}. "
            "Backups of its VMs fail until it is reachable again.",
            "inventory.vcenter",
            str(vc.pk),
            vc.name,
        )
        for vc in VCenter.objects.exclude(last_sync_error="")
    ]


@dataclass(frozen=True)
class StoreUsage:
    used_bytes: int
    capacity_bytes: int
    measured_against: str  # what capacity_bytes is: the quota, or the file system's size

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0


def store_usage() -> StoreUsage:
    """How full the local store is: against STORE_QUOTA_GB when set, and against its file system;
    whichever is fuller. The store's own size is the hourly count (vault.usage), not a walk per check."""
    disk = shutil.disk_usage(settings.BACKUP_STORE_DIR)
    # `free` is what an unprivileged process may still write, so "used" includes the root reserve.
    usages = [StoreUsage(disk.total - disk.free, disk.total, f"the file system of {settings.BACKUP_STORE_DIR}")]
    if settings.BACKUP_STORE_QUOTA:
        usages.append(StoreUsage(local_store_bytes(), settings.BACKUP_STORE_QUOTA, "the quota STORE_QUOTA_GB"))
    return max(usages, key=lambda usage: usage.percent)


@check(Kind.STORE_NEARLY_FULL)
def store_nearly_full(now: dt.datetime) -> Iterable[Finding]:
    usage = store_usage()
    if usage.percent < settings.STORE_NEARLY_FULL_PERCENT:
        return []
    critical = usage.percent >= max(STORE_CRITICAL_PERCENT, settings.STORE_NEARLY_FULL_PERCENT)
    return [
        Finding(
            Kind.STORE_NEARLY_FULL,
            "local-store",
            Severity.CRITICAL if critical else Severity.WARNING,
            "The local backup store is nearly full",
            f"{usage.percent:.0f}% used: {filesizeformat(usage.used_bytes)} of {filesizeformat(usage.capacity_bytes)} "
            f"({usage.measured_against}; the alert threshold is {settings.STORE_NEARLY_FULL_PERCENT}%). Backups fail "
            "once it is full: shorten local retention, run garbage collection, or add space.",
            "vault",
            "",
            "Local store",
        )
    ]


@check(Kind.INSTANT_RUNNING_LONG)
def instant_recoveries_running_long(now: dt.datetime) -> Iterable[Finding]:
    """A VM still running from its recovery point (instant recovery, not yet migrated or stopped) after
    INSTANT_ALERT_HOURS: its disks live on the backup server and its writes fill the overlay."""
    hours = settings.INSTANT_ALERT_HOURS
    running = InstantRecovery.objects.filter(
        state=InstantRecovery.State.RUNNING, started__lte=now - dt.timedelta(hours=hours)
    )
    return [
        Finding(
            Kind.INSTANT_RUNNING_LONG,
            str(row.pk),
            Severity.WARNING,
            f"{row.vm_name} has run from its backup for over {hours} hour{pluralize(hours)}",
            f"Instant recovery {row.pk} started {when(row.started)} on {row.host_name}; the VM still runs from the "
            f"backup server ({filesizeformat(row.overlay_bytes)} written to its overlay). Migrate it to a datastore "
            "(Instant recoveries page, or `manage.py instant-recovery migrate`) or stop it.",
            "instant.instantrecovery",
            str(row.pk),
            row.vm_name,
        )
        for row in running
    ]


# A restart of an instant recovery's data path stays an open alert this long (then it resolves).
RESTART_ALERT_FOR = dt.timedelta(hours=1)


def _instant(kind: str, row: InstantRecovery, severity: str, title: str, detail: str) -> Finding:
    return Finding(kind, str(row.pk), severity, title, detail, "instant.instantrecovery", str(row.pk), row.vm_name)


@check(Kind.INSTANT_RESTARTED)
def instant_data_paths_restarted(now: dt.datetime) -> Iterable[Finding]:
    """The FUSE server of a point, or the NFS server, died under a running VM and was restarted: the
    guest's I/O waited meanwhile (NFS retries), and the cause may come back."""
    rows = InstantRecovery.objects.filter(state__in=InstantRecovery.SERVED, last_restart__gte=now - RESTART_ALERT_FOR)
    return [
        _instant(
            Kind.INSTANT_RESTARTED,
            row,
            Severity.WARNING,
            f"The data path of {row.vm_name}'s instant recovery was restarted",
            f"Instant recovery {row.pk}: {row.restart_reason or 'a server exited'}; it was restarted "
            f"{when(row.last_restart)} and reads resumed ({row.restarts} restart{pluralize(row.restarts)} in all). "
            "See the supervisor's log and serve.log under INSTANT_DIR; migrate the VM to a datastore "
            "to stop depending on them.",
        )
        for row in rows
    ]


@check(Kind.INSTANT_OVERLAY_FULL)
def instant_writes_failing(now: dt.datetime) -> Iterable[Finding]:
    """A VM running from its point whose writes fail: the overlay's file system is full (the guest sees
    write errors, as from a failing disk; the point and its chunks are untouched)."""
    rows = InstantRecovery.objects.filter(state__in=InstantRecovery.SERVED).exclude(write_error="")
    return [
        _instant(
            Kind.INSTANT_OVERLAY_FULL,
            row,
            Severity.CRITICAL,
            f"{row.vm_name}'s writes fail (instant recovery)",
            f"Instant recovery {row.pk}: {row.write_error} {filesizeformat(row.overlay_bytes)} written so far.",
        )
        for row in rows
    ]


@check(Kind.INSTANT_STOP_FAILING)
def instant_stops_failing(now: dt.datetime) -> Iterable[Finding]:
    """A stop that could not finish (vCenter unreachable): retried every few minutes by the reaper."""
    rows = InstantRecovery.objects.filter(state=InstantRecovery.State.STOPPING).exclude(error="")
    return [
        _instant(
            Kind.INSTANT_STOP_FAILING,
            row,
            Severity.WARNING,
            f"{row.vm_name} could not be stopped yet",
            f"Instant recovery {row.pk} is still being stopped: {row.error}.",
        )
        for row in rows
    ]


RESTORE_TESTS_PAGE = "/restore-tests/"
PROVEN = (RestoreTest.State.PASSED, RestoreTest.State.FAILED)


@check(Kind.RESTORE_TEST_FAILED)
def restore_tests_failed(now: dt.datetime) -> Iterable[Finding]:
    """A VM's newest restore test that passed or failed, failed: its newest tested point is not proven
    recoverable ("could not run" proves nothing either way). Resolved by a later test that passes."""
    later = RestoreTest.objects.filter(vm=OuterRef("vm"), state__in=PROVEN, finished__gt=OuterRef("finished"))
    failed = (
        RestoreTest.objects.filter(state=RestoreTest.State.FAILED, finished__isnull=False, vm__removed_at__isnull=True)
        .exclude(Exists(later))
        .select_related("vm")
        .order_by("vm_id", "-finished", "-pk")
    )
    newest: dict[int, RestoreTest] = {}
    for test in failed:
        newest.setdefault(test.vm_id, test)
    return [
        about_vm(
            Kind.RESTORE_TEST_FAILED,
            test.vm,
            Severity.CRITICAL,
            f"Restore test of {test.vm.name} failed",
            f"The restore test of its point of {when(test.point_created)} failed at the {test.failed_check or 'test'} "
            f"check ({when(test.finished)}): {test.error or 'no reason was recorded.'} The point is not proven "
            f"recoverable; see the Restore tests page ({RESTORE_TESTS_PAGE}).",
            job_id=str(test.job_id) if test.job_id else None,
        )
        for test in newest.values()
    ]


@check(Kind.RESTORE_TEST_OVERDUE)
def restore_tests_overdue(now: dt.datetime) -> Iterable[Finding]:
    """A VM not proven recoverable within its group's restore test policy (restore_tests.queries.overdue).
    Resolved once a test passes."""
    findings = []
    for item in overdue(now):
        vm, every = item.vm, item.policy.every_days
        policy = f"(policy: every {every} day{pluralize(every)})"
        if item.last is not None and item.last.finished is not None:
            days = (now - item.last.finished).days
            title = f"{vm.name} not proven recoverable for {days} day{pluralize(days)} {policy}"
        else:
            title = f"{vm.name} never proven recoverable {policy}"
        detail = (
            f"{vm.name} is {item.since}; the group {item.policy.group.name} asks for a passed restore test every "
            f"{every} day{pluralize(every)}. Queue one on the Restore tests page ({RESTORE_TESTS_PAGE}) or with "
            f"`manage.py restore-test {vm.name}`."
        )
        findings.append(about_vm(Kind.RESTORE_TEST_OVERDUE, vm, Severity.WARNING, title, detail))
    return findings
