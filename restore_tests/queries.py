"""What the pages, the report, the overview and the alerts show of restore tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Min

from inventory.models import VirtualMachine
from protection.models import ProtectionGroup
from restore_tests.models import RestoreTest, RestoreTestPolicy
from vault.models import RecoveryPoint

State = RestoreTest.State


def last_proven(vm_ids: Iterable[int]) -> dict[int, RestoreTest]:
    """Each VM's newest passed test: when it was last proven recoverable, and which point."""
    found: dict[int, RestoreTest] = {}
    passed = RestoreTest.objects.filter(vm_id__in=list(vm_ids), state=State.PASSED).order_by("vm_id", "-finished")
    for test in passed.only("id", "vm_id", "point_id", "point_created", "started", "finished"):
        found.setdefault(test.vm_id, test)
    return found


def latest_by_point(point_ids: Iterable[uuid.UUID | str]) -> dict[str, RestoreTest]:
    """Each point's newest finished test (passed or failed; "could not run" proves nothing)."""
    found: dict[str, RestoreTest] = {}
    tests = RestoreTest.objects.filter(point_id__in=list(point_ids), state__in=(State.PASSED, State.FAILED))
    for test in tests.order_by("point_id", "-finished"):
        found.setdefault(str(test.point_id), test)
    return found


@dataclass(frozen=True)
class Overdue:
    vm: VirtualMachine
    policy: RestoreTestPolicy
    last: RestoreTest | None  # its newest passed test, if any

    @property
    def since(self) -> str:
        return f"last proven {self.last.finished:%Y-%m-%d}" if self.last and self.last.finished else "never proven"


def policies() -> list[RestoreTestPolicy]:
    """The enabled policy of each active protection group; a group without one has the defaults
    (enabled: every protected VM's recoverability is measured unless an administrator says no)."""
    found = []
    for group in ProtectionGroup.objects.filter(paused=False).select_related("restore_test_policy", "policy"):
        policy = getattr(group, "restore_test_policy", None) or RestoreTestPolicy(group=group)
        if policy.enabled:
            found.append(policy)
    return found


def overdue(now: dt.datetime) -> list[Overdue]:
    """VMs of groups with an enabled policy not proven within `every_days`, among those whose first
    point is older than that (a VM protected yesterday is not late yet)."""
    result: list[Overdue] = []
    for policy in policies():
        since = now - dt.timedelta(days=policy.every_days)
        vms = VirtualMachine.objects.filter(protection_group=policy.group, removed_at__isnull=True).order_by("name")
        first_points = dict(
            RecoveryPoint.objects.filter(vm__in=vms).values_list("vm_id").annotate(first=Min("created"))
        )
        proven = last_proven(first_points)
        for vm in vms:
            first = first_points.get(vm.pk)
            last = proven.get(vm.pk)
            if first is None or first > since or (last is not None and last.finished and last.finished >= since):
                continue
            result.append(Overdue(vm, policy, last))
    return result
