"""Restore tests on a schedule: every 5 minutes (config.cron), each enabled policy whose window is
open (a group without a policy has the defaults: every 7 days, any time, one at once) queues tests of
its group's VMs that are due, up to `max_concurrent` at once. A VM is due when it was not proven
within `every_days` and it has a point not tested yet, or its last test ended long enough ago to try
again (RETRY_AFTER): a failed point is not tested again every five minutes."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.utils import timezone

from inventory.models import VirtualMachine
from restore_tests import actions, queries, reaper, results
from restore_tests.models import RestoreTest, RestoreTestPolicy

log = logging.getLogger(__name__)
RETRY_AFTER = dt.timedelta(hours=24)
State = RestoreTest.State


def in_window(policy: RestoreTestPolicy, now: dt.datetime) -> bool:
    """Whether `now` is inside the policy's window, in the zone of the group's backup schedule."""
    if policy.window_hours >= 24:
        return True
    backup_policy = getattr(policy.group, "policy", None)
    zone = ZoneInfo(getattr(backup_policy, "timezone", "") or "UTC")
    local = now.astimezone(zone)
    for day in (local.date(), local.date() - dt.timedelta(days=1)):  # a window may cross midnight
        start = dt.datetime.combine(day, policy.window_start, tzinfo=zone)
        if start <= local < start + dt.timedelta(hours=policy.window_hours):
            return True
    return False


def is_due(vm: VirtualMachine, policy: RestoreTestPolicy, now: dt.datetime) -> bool:
    if RestoreTest.objects.filter(
        vm=vm, state=State.PASSED, finished__gte=now - dt.timedelta(days=policy.every_days)
    ).exists():
        return False
    point = actions.choose_point(vm)
    if point is None:
        return False
    last = RestoreTest.objects.filter(vm=vm, state__in=RestoreTest.FINAL).order_by("-finished").first()
    return (
        last is None or last.point_id != point.pk or (last.finished is not None and last.finished < now - RETRY_AFTER)
    )


def tick(now: dt.datetime | None = None) -> list[int]:
    """Queue the tests that are due; their ids."""
    now = now or timezone.now()
    reaper.end_abandoned_tests()
    reaper.remove_leftover_vms()
    results.refresh_overdue(now)
    queued: list[int] = []
    for policy in queries.policies():
        if not in_window(policy, now):
            continue
        free = policy.max_concurrent - RestoreTest.objects.filter(group=policy.group, state__in=actions.ACTIVE).count()
        busy = set(RestoreTest.objects.filter(state__in=actions.ACTIVE).values_list("vm_id", flat=True))
        vms = VirtualMachine.objects.filter(protection_group=policy.group, removed_at__isnull=True).exclude(pk__in=busy)
        for vm in vms.order_by("name"):
            if free <= 0:
                break
            if not is_due(vm, policy, now):
                continue
            try:
                queued.append(actions.start_test(None, vm, group=policy.group).pk)
            except actions.RestoreTestRefused as exc:
                log.info("restore test of %s not queued: %s", vm.name, exc)
                continue
            free -= 1
    return queued
