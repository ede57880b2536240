"""Each kind of alert opens when its condition appears and resolves when it clears."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from django.utils import timezone

from alerts import conditions
from alerts.evaluation import evaluate
from alerts.models import Alert
from inventory import vcenter as vsphere
from inventory.models import VirtualMachine
from jobs import runner
from jobs.models import JobRun
from tests.alerts.conftest import REAL_STORE_USAGE
from tests.factories.jobs import backup_run
from tests.inventory.factories import create_test_vm
from vault.models import RecoveryPoint, VaultSettings

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def open_alerts(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind, resolved_at__isnull=True))


def point(vm, when, **fields) -> RecoveryPoint:
    return RecoveryPoint.objects.create(
        vm=vm, group=vm.protection_group, created=when, completed=when, consistency="crash", **fields
    )


def test_an_rpo_breach_appears_when_the_clock_passes_the_slot_and_clears_with_a_new_point(vm):
    slot = dt.datetime.combine(timezone.now().date() + dt.timedelta(days=1), dt.time(22, 0), tzinfo=UTC)
    point(vm, slot - dt.timedelta(days=1))

    evaluate(slot + dt.timedelta(hours=3))  # the backup may still be running
    assert open_alerts("rpo_breach") == []
    evaluate(slot + dt.timedelta(hours=5))
    (alert,) = open_alerts("rpo_breach")
    assert alert.key == str(vm.pk) and alert.title == "app-01 missed its recovery point objective"
    assert alert.severity == "critical" and "newest good point" in alert.detail

    point(vm, slot + dt.timedelta(minutes=5))
    evaluate(slot + dt.timedelta(hours=6))
    alert.refresh_from_db()
    assert alert.resolved_at == slot + dt.timedelta(hours=6)


def test_an_unreachable_vcenter_opens_an_alert_until_a_sync_works(vm):
    vc = vm.vcenter
    vc.last_sync_error = "Connection refused (vc1.example.com:443)"
    vc.save()
    evaluate()
    (alert,) = open_alerts("vcenter_unreachable")
    assert (alert.key, alert.target_label, alert.severity) == (str(vc.pk), "vc1", "critical")
    assert alert.title == "vCenter vc1 is unreachable" and "Connection refused" in alert.detail
    assert alert.target_url() == "/inventory/vcenters/"

    vc.last_sync_error = ""
    vc.save()
    evaluate()
    assert open_alerts("vcenter_unreachable") == []


def test_a_nearly_full_store_warns_then_turns_critical_then_resolves(db, monkeypatch, settings):
    settings.STORE_NEARLY_FULL_PERCENT = 90
    usage = {"used": 50}
    monkeypatch.setattr(
        conditions, "store_usage", lambda: conditions.StoreUsage(usage["used"] * 2**30, 100 * 2**30, "the quota")
    )
    evaluate()
    assert open_alerts("store_nearly_full") == []

    usage["used"] = 92
    evaluate()
    (alert,) = open_alerts("store_nearly_full")
    assert (alert.key, alert.severity) == ("local-store", "warning") and alert.target_url() == "/vault/"
    assert alert.detail.startswith("92% used: 92.0\xa0GB of 100.0\xa0GB (the quota")

    usage["used"] = 99
    evaluate()
    assert [(a.pk, a.severity) for a in open_alerts("store_nearly_full")] == [(alert.pk, "critical")]

    usage["used"] = 60
    evaluate()
    assert open_alerts("store_nearly_full") == []


def test_store_usage_is_measured_against_the_quota_and_the_file_system(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path
    (tmp_path / "chunk").write_bytes(b"x" * 4096)
    settings.BACKUP_STORE_QUOTA = 4000  # already over it: the quota is the fuller measure
    usage = REAL_STORE_USAGE()
    assert usage.used_bytes >= 4096 and usage.capacity_bytes == 4000 and "STORE_QUOTA_GB" in usage.measured_against
    settings.BACKUP_STORE_QUOTA = None
    usage = REAL_STORE_USAGE()
    assert usage.capacity_bytes > 4000 and "file system" in usage.measured_against and 0 < usage.percent <= 100


def test_a_damaged_point_opens_an_alert_per_vm(vm):
    damaged = point(vm, timezone.now() - dt.timedelta(days=1), damaged=True)
    point(vm, timezone.now())
    evaluate()
    (alert,) = open_alerts("damaged_point")
    assert alert.key == str(vm.pk) and alert.title == "app-01 has a damaged recovery point"

    RecoveryPoint.objects.filter(pk=damaged.pk).update(damaged=False)  # verified again, fine
    evaluate()
    assert open_alerts("damaged_point") == []


def test_replication_lag_counts_only_with_a_vault_and_beyond_the_limit(vm, settings):
    settings.REPLICATION_LAG_HOURS = 24
    now = timezone.now()
    point(vm, now - dt.timedelta(hours=30))
    evaluate(now)
    assert open_alerts("replication_lag") == []  # no vault configured: nothing to lag behind

    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": "/srv/vault"})
    evaluate(now - dt.timedelta(hours=10))
    assert open_alerts("replication_lag") == []
    evaluate(now)
    (alert,) = open_alerts("replication_lag")
    assert alert.key == "vault" and alert.severity == "warning" and "app-01" in alert.detail
    assert alert.title == "Replication to the vault is more than 24 hours behind"

    RecoveryPoint.objects.update(vault_status=RecoveryPoint.VaultStatus.REPLICATED, vault_at=now)
    evaluate(now)
    assert open_alerts("replication_lag") == []


@pytest.fixture
def fake_vcenter(monkeypatch):
    """The snapshot cleanup's view of vCenter: `leftovers` per VM name, or an error to raise."""
    leftovers: dict[str, int | Exception] = {}

    @contextlib.contextmanager
    def open_connection(vc):
        yield object()

    def remove_orphan_snapshots(conn, moref, log):
        found = leftovers.get(VirtualMachine.objects.get(moref=moref).name, 0)
        if isinstance(found, Exception):
            raise found
        return found

    # protection.backup first: patching it imports it, and a module imported while open_connection is
    # patched would keep the fake for the rest of the run (it imports the name at its top).
    monkeypatch.setattr("protection.backup.remove_orphan_snapshots", remove_orphan_snapshots)
    monkeypatch.setattr("inventory.connection.open_connection", open_connection)
    return leftovers


def run_cleanup(vcenter_id: int | None = None) -> JobRun:
    params = {"vcenter_id": vcenter_id} if vcenter_id else {}
    run = JobRun.objects.create(kind="protection.cleanup_snapshots", title="Remove leftovers", params=params)
    runner.execute(str(run.pk))
    run.refresh_from_db()
    return run


def test_leftover_snapshots_open_alerts_until_a_later_cleanup_finds_none(vm, fake_vcenter):
    other = create_test_vm(vm.folder, "db-01")
    VirtualMachine.objects.filter(pk__in=[vm.pk, other.pk]).update(snapshot_count=1)
    fake_vcenter.update({"app-01": 2})

    first = run_cleanup(vm.vcenter_id)
    assert first.status == JobRun.Status.SUCCEEDED and first.result == {"removed": 2}
    evaluate()
    (alert,) = open_alerts("orphaned_snapshot")
    assert alert.key == str(vm.pk) and alert.severity == "warning" and alert.job_id == first.pk
    assert "removed 2 backup snapshots" in alert.detail

    # The next cleanup cannot remove the one on db-01: that one is critical, and app-01's alert stays
    # (the failed run did not finish its check).
    fake_vcenter.clear()
    fake_vcenter["db-01"] = vsphere.VCenterError("The operation is not allowed in the current state.")
    second = run_cleanup()
    assert second.status == JobRun.Status.FAILED
    evaluate()
    by_vm = {a.key: a for a in open_alerts("orphaned_snapshot")}
    assert by_vm[str(other.pk)].severity == "critical" and "not allowed" in by_vm[str(other.pk)].detail
    assert by_vm[str(vm.pk)].pk == alert.pk

    # A clean run resolves both.
    fake_vcenter.clear()
    assert run_cleanup(vm.vcenter_id).status == JobRun.Status.SUCCEEDED
    evaluate()
    assert open_alerts("orphaned_snapshot") == []


def test_a_check_that_fails_leaves_its_alerts_alone(vm, monkeypatch):
    vm.vcenter.last_sync_error = "timed out"
    vm.vcenter.save()
    evaluate()
    (alert,) = open_alerts("vcenter_unreachable")

    def broken(now):
        raise RuntimeError("the database is in a bad mood")

    monkeypatch.setitem(conditions.CHECKS, "vcenter_unreachable", broken)
    changes = evaluate()
    assert changes.failed_checks == ["vcenter_unreachable"] and open_alerts("vcenter_unreachable") == [alert]


def test_a_vm_nobody_protects_any_more_has_no_failed_backup_alert(vm):
    backup_run(vm, JobRun.Status.FAILED, error="boom")
    evaluate()
    assert len(open_alerts("failed_backup")) == 1
    VirtualMachine.objects.filter(pk=vm.pk).update(removed_at=timezone.now())
    evaluate()
    assert open_alerts("failed_backup") == []
