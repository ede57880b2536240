"""Restore tests queued and policies changed: one transaction each, with its audit row. Permission
checks are the callers'."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.actions import record
from inventory.models import VirtualMachine
from jobs.runner import enqueue
from protection.models import ProtectionGroup
from restore_tests.models import RestoreTest, RestoreTestPolicy
from vault import archive
from vault.models import RecoveryPoint

RUN_KIND = "restore_tests.run"
ACTIVE = (RestoreTest.State.QUEUED, RestoreTest.State.RUNNING)
POLICY_FIELDS = (
    "enabled", "every_days", "window_start", "window_hours", "max_concurrent", "host", "datastore", "name_prefix",
    "heartbeat_seconds", "network", "require_ip", "tcp_port", "canary_path", "canary_min_bytes",
)  # fmt: skip


class RestoreTestRefused(Exception):
    """A restore test that cannot be queued; the message says why, nothing was changed."""


def choose_point(vm: VirtualMachine) -> RecoveryPoint | None:
    """The newest point of the VM not tested yet (else the newest), leaving out points whose chunks
    are archived: an instant recovery cannot read those."""
    tested = RestoreTest.objects.filter(vm=vm, state__in=(RestoreTest.State.PASSED, RestoreTest.State.FAILED))
    tested_ids = set(tested.values_list("point_id", flat=True))
    readable = [p for p in RecoveryPoint.objects.filter(vm=vm).order_by("-created")[:20] if archive.notice(p) is None]
    untested = [p for p in readable if p.pk not in tested_ids]
    candidates = untested or readable
    return candidates[0] if candidates else None


def policy_of(vm: VirtualMachine) -> RestoreTestPolicy:
    """The policy of the VM's protection group, else the defaults (not saved)."""
    policy = RestoreTestPolicy.objects.filter(group_id=vm.protection_group_id).first()
    return policy or RestoreTestPolicy()


def start_test(
    user: Any, vm: VirtualMachine, point: RecoveryPoint | None = None, group: ProtectionGroup | None = None
) -> RestoreTest:
    """Queue a restore test of the point (default: choose_point)."""
    if point is not None and point.vm_id != vm.pk:
        raise RestoreTestRefused(f"That recovery point is not one of {vm.name}'s.")
    point = point or choose_point(vm)
    if point is None:
        raise RestoreTestRefused(f"{vm.name} has no recovery point that can be tested.")
    notice = archive.notice(point)
    if notice is not None:
        raise RestoreTestRefused(archive.refusal([point], "no restore test was queued"))
    with transaction.atomic():
        VirtualMachine.objects.select_for_update().filter(pk=vm.pk).first()  # one test per VM at a time
        if RestoreTest.objects.filter(vm=vm, state__in=ACTIVE).exists():
            raise RestoreTestRefused(f"A restore test of {vm.name} is queued or running already.")
        test = RestoreTest.objects.create(
            vm=vm, point=point, point_created=point.created, group=group or vm.protection_group,
            requested_by=user if getattr(user, "is_authenticated", False) else None,
        )  # fmt: skip
        test.job = enqueue(
            RUN_KIND, params={"test_id": test.pk}, target=vm, user=user,
            title=f"Restore test of {vm.name} (point of {timezone.localtime(point.created):%Y-%m-%d %H:%M})",
        )  # fmt: skip
        test.save(update_fields=["job"])
        record(user, "restore_test.start", target=vm, details={"point": str(point.pk), "restore_test": test.pk})
    return test


def save_policy(user: Any, group: ProtectionGroup, **fields: Any) -> RestoreTestPolicy:
    """Create or change the group's restore test policy (only POLICY_FIELDS)."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValueError(f"not policy fields: {sorted(unknown)}")
    with transaction.atomic():
        policy, created = RestoreTestPolicy.objects.get_or_create(group=group)
        for name, value in fields.items():
            setattr(policy, name, value)
        policy.full_clean()
        policy.save()
        shown = {name: str(getattr(policy, name)) for name in fields}
        record(user, "restore_test.policy", target=group, details={"created": created, **shown})
    return policy
