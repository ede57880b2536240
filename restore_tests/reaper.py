"""What a restore test leaves when its worker is killed mid-test, removed by the scheduler's tick:

- a test whose job ended without finishing it ends as "could not run", and the instant recovery it
  started is stopped (instant.reaper retries that stop and removes the NFS datastore if need be);
- a VM tagged VM Backup/restore-test that no running test owns and that is not an instant
  recovery's (those are instant.reaper's) - the VM a full restore made for a test - is destroyed.
Each removal is audited (restore_test.reap)."""

from __future__ import annotations

import contextlib
import logging

from django.db import transaction
from django.utils import timezone

from audit.actions import record
from instant import actions as instant_actions
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import VCenter
from jobs.models import JobRun
from restore_tests.actions import ACTIVE
from restore_tests.models import RestoreTest

log = logging.getLogger(__name__)
TAG_CATEGORY, TAG = "VM Backup", "restore-test"  # on every test VM (restore_tests.jobs tags them)
ABANDONED = "Its job ended without finishing the test (its worker was killed?); what it made is removed."


def end_abandoned_tests() -> list[int]:
    """Tests whose job is final while the row is not: could not run; their instant recovery stopped."""
    ended = []
    for test in RestoreTest.objects.filter(state__in=ACTIVE, job__status__in=JobRun.FINAL):
        with transaction.atomic():
            RestoreTest.objects.filter(pk=test.pk).update(
                state=RestoreTest.State.ERROR, error=ABANDONED, finished=timezone.now()
            )
            record(None, "restore_test.reap", target=test.vm, details={"restore_test": test.pk, "ended": True})
        recovery = test.instant_recovery
        if recovery is not None and recovery.state == InstantRecovery.State.RUNNING:
            with contextlib.suppress(instant_actions.InstantRefused):  # stopped meanwhile
                instant_actions.stop(None, recovery)
        ended.append(test.pk)
    return ended


def remove_leftover_vms() -> list[str]:
    """Destroy tagged test VMs no running test owns (not instant recoveries'); their names."""
    if not RestoreTest.objects.filter(method="restore").exists():
        return []  # only full restores leave VMs of their own (instant recoveries' are instant.reaper's)
    owned = set(RestoreTest.objects.filter(state__in=ACTIVE).values_list("test_vm_name", flat=True))
    removed: list[str] = []
    for vc in VCenter.objects.order_by("pk"):
        try:
            with open_connection(vc) as conn:
                removed += _remove_in(conn, vc, owned)
        except vsphere.VCenterError as exc:  # unreachable now: the next tick tries again
            log.warning("restore test leftovers in %s not checked: %s", vc.name, exc)
    return removed


def _remove_in(conn: vsphere.Connection, vc: VCenter, owned: set[str]) -> list[str]:
    removed = []
    for moref in vsphere.vms_with_tag(conn, TAG_CATEGORY, TAG):
        try:
            config = vsphere.vm_config(conn, moref)
        except vsphere.NotFound:
            continue
        name, vmx = str(config.get("name") or ""), str(config.get("vmx_path") or "")
        if name in owned or vmx.startswith("[vmb-instant-"):
            continue
        vsphere.destroy_vm(conn, moref)
        with transaction.atomic():
            record(None, "restore_test.reap", target=vc, details={"vm": name, "moref": moref})
        removed.append(name)
    return removed
