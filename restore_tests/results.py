"""A finished test's outcome, written where the lower layers' pages read it (the point's restore_test
fields, the VM's proven_at), and the VMs' proof_overdue flags, refreshed by the scheduler's tick."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from inventory.models import VirtualMachine
from restore_tests.models import RestoreTest
from restore_tests.queries import overdue
from vault.models import RecoveryPoint

State = RestoreTest.State


def note(test: RestoreTest) -> str:
    """ "12 s" for a pass; "heartbeat: VMware Tools did not ..." for a failure."""
    if test.state == State.PASSED:
        return f"{test.duration.total_seconds():.0f} s" if test.duration else ""
    return test.failure[:500]


def record(test: RestoreTest) -> None:
    """After a test passed or failed (a test that could not run proves nothing and changes nothing)."""
    if test.state not in (State.PASSED, State.FAILED):
        return
    if test.point_id is not None:
        RecoveryPoint.objects.filter(pk=test.point_id).update(
            restore_test=test.state, restore_tested_at=test.finished, restore_test_note=note(test)
        )
    if test.state == State.PASSED:
        VirtualMachine.objects.filter(pk=test.vm_id).filter(
            Q(proven_at__isnull=True) | Q(proven_at__lt=test.finished)
        ).update(proven_at=test.finished, proof_overdue=False)


def refresh_overdue(now: dt.datetime) -> int:
    """Set proof_overdue on exactly the VMs queries.overdue names; how many are overdue."""
    late = {item.vm.pk for item in overdue(now)}
    VirtualMachine.objects.filter(proof_overdue=True).exclude(pk__in=late).update(proof_overdue=False)
    VirtualMachine.objects.filter(pk__in=late, proof_overdue=False).update(proof_overdue=True)
    return len(late)
