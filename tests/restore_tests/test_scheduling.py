"""The restore test scheduler: in an open window it queues the tests that are due, up to the policy's
"at once"; a VM proven recently, or whose newest point failed not long ago, is not due; a window can
cross midnight in the group's zone; VMs not proven within the policy are flagged overdue."""

from __future__ import annotations

import datetime as dt

import pytest

from inventory.models import VirtualMachine
from protection.models import ProtectionGroup
from restore_tests import actions, scheduling
from restore_tests.models import RestoreTest
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 3, 2, 30, tzinfo=dt.UTC)


def group_of(*names: str, points_days_ago: float = 10) -> tuple[ProtectionGroup, list[VirtualMachine]]:
    folder = create_test_tree(create_test_vcenter(), ["Prod"])["Prod"]
    vms = [create_test_vm(folder, name) for name in names]
    group = protect_vms("Prod", vms)
    for vm in vms:
        taken = NOW - dt.timedelta(days=points_days_ago)
        RecoveryPoint.objects.create(vm=vm, created=taken, completed=taken, consistency="crash")
    return group, vms


def finished(vm: VirtualMachine, state: str, days_ago: float) -> RestoreTest:
    point = RecoveryPoint.objects.filter(vm=vm).latest("created")
    when = NOW - dt.timedelta(days=days_ago)
    return RestoreTest.objects.create(vm=vm, point=point, state=state, started=when, finished=when)


def test_an_open_window_queues_the_due_vms_up_to_the_policy_s_at_once() -> None:
    group, vms = group_of("a-01", "b-01", "c-01")
    actions.save_policy(None, group, max_concurrent=2)

    queued = scheduling.tick(NOW)

    assert len(queued) == 2
    assert set(RestoreTest.objects.values_list("vm__name", flat=True)) == {"a-01", "b-01"}
    assert all(test.job is not None for test in RestoreTest.objects.all())
    assert scheduling.tick(NOW) == []  # two running: no room until one ends


def test_a_closed_window_queues_nothing_and_one_across_midnight_opens_in_the_group_s_zone() -> None:
    group, _vms = group_of("a-01")
    group.policy.timezone = "Europe/Berlin"
    group.policy.save()
    actions.save_policy(None, group, window_start=dt.time(23, 0), window_hours=4)  # 23:00-03:00 Berlin

    assert scheduling.tick(dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)) == []  # 13:00 in Berlin
    assert len(scheduling.tick(dt.datetime(2026, 12, 3, 0, 30, tzinfo=dt.UTC))) == 1  # 01:30 in Berlin


def test_a_vm_proven_recently_or_whose_newest_point_just_failed_is_not_due() -> None:
    group, (proven, failing, fresh) = group_of("proven-01", "failing-01", "fresh-01")
    actions.save_policy(None, group, max_concurrent=5, every_days=7)
    finished(proven, RestoreTest.State.PASSED, days_ago=2)
    finished(failing, RestoreTest.State.FAILED, days_ago=0.1)

    scheduling.tick(NOW)

    assert list(RestoreTest.objects.filter(state=RestoreTest.State.QUEUED).values_list("vm__name", flat=True)) == [
        "fresh-01"
    ]


def test_a_failed_point_is_tried_again_after_a_day_or_when_a_new_point_arrives() -> None:
    group, (vm,) = group_of("failing-01")
    actions.save_policy(None, group, max_concurrent=5)
    finished(vm, RestoreTest.State.FAILED, days_ago=0.1)
    assert scheduling.tick(NOW) == []
    RecoveryPoint.objects.create(vm=vm, created=NOW, completed=NOW, consistency="crash")
    assert len(scheduling.tick(NOW)) == 1


def test_vms_not_proven_within_the_policy_are_flagged_overdue_until_proven() -> None:
    group, (late, young) = group_of("late-01", "young-01")
    RecoveryPoint.objects.filter(vm=young).update(created=NOW - dt.timedelta(days=1))
    actions.save_policy(None, group, every_days=7, enabled=True, window_hours=1, window_start=dt.time(12))

    scheduling.tick(NOW)

    flags = dict(VirtualMachine.objects.values_list("name", "proof_overdue"))
    assert flags == {"late-01": True, "young-01": False}
    finished(late, RestoreTest.State.PASSED, days_ago=0)
    scheduling.tick(NOW)
    assert not VirtualMachine.objects.get(name="late-01").proof_overdue


def test_a_group_without_a_policy_is_tested_with_the_defaults_and_a_disabled_one_is_not() -> None:
    group, _vms = group_of("a-01", "b-01")
    assert len(scheduling.tick(NOW)) == 1  # every 7 days, any time, one at once
    RestoreTest.objects.all().delete()
    actions.save_policy(None, group, enabled=False)
    assert scheduling.tick(NOW) == []
