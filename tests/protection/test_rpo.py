"""RPO: a VM breaches when a slot passed (plus grace) without a good point after it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from protection.rpo import rpo_states
from tests.factories.protection import POLICY, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
UTC = dt.UTC


@pytest.fixture
def vm():
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "app-01")
    protect_vms("Prod", [vm], {**POLICY, "schedule": "daily 22:00"})
    return vm


def point(vm, when, **fields):
    return RecoveryPoint.objects.create(vm=vm, created=when, completed=when, consistency="crash", **fields)


def test_a_breach_appears_when_the_clock_passes_the_slot_and_its_grace(vm):
    joined = timezone.now()
    day = joined.date() + dt.timedelta(days=1)
    slot = dt.datetime.combine(day, dt.time(22, 0), tzinfo=UTC)
    point(vm, slot - dt.timedelta(days=1))  # yesterday's point

    assert not rpo_states(slot + dt.timedelta(hours=3))[vm.pk].breached  # the backup may still be running
    state = rpo_states(slot + dt.timedelta(hours=5))[vm.pk]
    assert state.breached and state.due_slot == slot and state.label == "breached"
    point(vm, slot + dt.timedelta(minutes=5))
    assert not rpo_states(slot + dt.timedelta(hours=5))[vm.pk].breached


def test_a_damaged_point_does_not_count(vm):
    slot = dt.datetime.combine(timezone.now().date() + dt.timedelta(days=1), dt.time(22, 0), tzinfo=UTC)
    point(vm, slot + dt.timedelta(minutes=5), damaged=True)
    assert rpo_states(slot + dt.timedelta(hours=5))[vm.pk].breached


def test_a_vm_that_joined_after_the_slot_and_paused_groups_are_not_breaches(vm):
    slot_before_joining = dt.datetime.combine(timezone.now().date() - dt.timedelta(days=1), dt.time(22, 0), tzinfo=UTC)
    assert not rpo_states(slot_before_joining + dt.timedelta(hours=5))[vm.pk].breached
    vm.protection_group.paused = True
    vm.protection_group.save()
    later = timezone.now() + dt.timedelta(days=3)
    state = rpo_states(later)[vm.pk]
    assert not state.breached and state.label == "paused"
