"""What a stop or a crash leaves in vCenter is removed later, audited: a stop that found vCenter
unreachable stays stopping (still served: the VM may run on), says so in an alert, and is retried by
the reaper until it succeeds; an NFS datastore of a recovery that is over (a crash before its stop)
is unmounted and its VM unregistered; a datastore this product did not mount is never touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerts.evaluation import evaluate
from alerts.models import Alert
from audit.models import AuditEntry
from instant import actions, reaper, supervisor
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.models import VCenter
from jobs.models import JobRun
from tests.instant.test_instant_recovery_jobs import (
    assert_nothing_left,
    backed_up,
    connect,
    datastore_names,
    lab,
    run_job,
    started,
    supervising,
    vm_names,
)
from tools.services import free_port

__all__ = ["backed_up", "lab", "supervising"]  # fixtures, used by name
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stop_while_vcenter_is_unreachable_is_retried_until_nothing_is_left(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    point = backed_up("lnx-01")
    recovery = started(point, run_worker, admin, name="lnx-01-stopped-late")
    vc = point.vm.vcenter
    with connect(lab.sim) as conn:
        assert reaper.reap_vcenter(conn, vc) == []  # a running recovery's datastore is not a leftover
    VCenter.objects.filter(pk=vc.pk).update(port=free_port())  # nothing answers there

    run = run_job(actions.stop(admin, recovery), run_worker)

    assert run.status == JobRun.Status.FAILED and "retried every 5 minutes" in run.error
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPING and recovery.error
    assert supervisor.is_ready(recovery)  # still served while the VM may still run from it
    evaluate()
    alert = Alert.objects.get(kind=Alert.Kind.INSTANT_STOP_FAILING, resolved_at__isnull=True)
    assert "lnx-01-stopped-late could not be stopped yet" in alert.title

    assert reaper.retry_failed_stops() == [recovery.pk]
    assert reaper.retry_failed_stops() == []  # queued already: not twice
    VCenter.objects.filter(pk=vc.pk).update(port=lab.sim.port)  # vCenter is back
    run_worker()

    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPED and not recovery.error
    assert_nothing_left(lab.sim, recovery, supervising)
    retry = AuditEntry.objects.get(action="instant.stop", actor__isnull=True)
    assert retry.details["retry"] is True and retry.details["instant_recovery"] == recovery.pk
    evaluate()
    assert not Alert.objects.filter(kind=Alert.Kind.INSTANT_STOP_FAILING, resolved_at__isnull=True).exists()


def test_the_datastore_and_vm_of_a_recovery_that_ended_without_a_stop_are_removed_and_audited(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    point = backed_up("lnx-01")
    recovery = started(point, run_worker, admin, name="lnx-01-crashed")
    actions.end(recovery, InstantRecovery.State.FAILED, error="its worker died")  # vCenter was never told
    assert recovery.datastore_name in datastore_names(lab.sim) and recovery.vm_name in vm_names(lab.sim)

    with connect(lab.sim) as conn:
        removed = reaper.reap_vcenter(conn, point.vm.vcenter)

    assert removed == [recovery.datastore_name]
    assert_nothing_left(lab.sim, recovery, supervising)
    entry = AuditEntry.objects.get(action="instant.reap")
    assert entry.details["vms"] == ["lnx-01-crashed"] and entry.details["instant_recovery"] == recovery.pk


def test_a_datastore_of_the_same_name_this_product_did_not_mount_is_left_alone(lab: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "someone-elses-export"
    elsewhere.mkdir()
    with connect(lab.sim) as conn:
        host = next(h for dc in conn.content.rootFolder.childEntity for h in dc.hostFolder.childEntity[0].host)
        vsphere.mount_nas_datastore(conn, host._moId, "vmb-instant-4242", "127.0.0.1", str(elsewhere))

        assert reaper.reap_vcenter(conn, VCenter.objects.get()) == []

    assert "vmb-instant-4242" in datastore_names(lab.sim)
    assert not AuditEntry.objects.filter(action="instant.reap").exists()
