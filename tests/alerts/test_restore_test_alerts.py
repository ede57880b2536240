"""Restore test alerts: a VM whose newest passed-or-failed restore test failed has a critical alert
(naming the VM, the point's date, the check and why) until a later test passes; a VM not proven within
its group's policy has a warning until a test passes. Rows are made directly: no job runs here."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from alerts.evaluation import evaluate
from alerts.models import Alert
from restore_tests.models import RestoreTest, RestoreTestPolicy
from tests.api.conftest import plain_point

pytestmark = pytest.mark.django_db
State = RestoreTest.State


def _test(vm: Any, state: str, days_ago: float, point: Any = None, **fields: Any) -> RestoreTest:
    finished = timezone.now() - dt.timedelta(days=days_ago)
    point = point or plain_point(vm, vm.protection_group, finished - dt.timedelta(hours=1))
    return RestoreTest.objects.create(
        vm=vm, point=point, point_created=point.created, group=vm.protection_group, state=state,
        started=finished - dt.timedelta(seconds=40), finished=finished, **fields,
    )  # fmt: skip


def _open(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind, resolved_at__isnull=True))


def test_a_failed_test_opens_a_critical_alert_naming_the_vm_the_point_and_the_check(vm):
    failed = _test(vm, State.FAILED, 0.1, failed_check="heartbeat", error="VMware Tools did not report running.")

    evaluate()

    (alert,) = _open(Alert.Kind.RESTORE_TEST_FAILED)
    assert alert.severity == Alert.Severity.CRITICAL and alert.key == str(vm.pk)
    assert alert.title == "Restore test of app-01 failed" and alert.target_label == "app-01"
    assert f"{timezone.localtime(failed.point_created):%Y-%m-%d %H:%M}" in alert.detail
    assert "failed at the heartbeat check" in alert.detail
    assert "VMware Tools did not report running." in alert.detail and "/restore-tests/" in alert.detail


def test_an_older_failure_followed_by_a_pass_raises_nothing(vm):
    _test(vm, State.FAILED, 3, failed_check="volumes", error="volume 2 is damaged")
    _test(vm, State.PASSED, 1)

    evaluate()

    assert not _open(Alert.Kind.RESTORE_TEST_FAILED)


def test_the_alert_stays_through_a_test_that_could_not_run_and_resolves_when_a_later_test_passes(vm):
    _test(vm, State.FAILED, 2, failed_check="volumes", error="volume 2 is damaged")
    evaluate()
    assert len(_open(Alert.Kind.RESTORE_TEST_FAILED)) == 1

    _test(vm, State.ERROR, 1, error="vCenter unreachable")
    evaluate()
    assert len(_open(Alert.Kind.RESTORE_TEST_FAILED)) == 1

    _test(vm, State.PASSED, 0.5)
    evaluate()
    assert not _open(Alert.Kind.RESTORE_TEST_FAILED)
    assert Alert.objects.get(kind=Alert.Kind.RESTORE_TEST_FAILED).resolved_at is not None


def test_a_vm_not_proven_within_its_policy_has_a_warning_until_a_test_passes(vm):
    RestoreTestPolicy.objects.create(group=vm.protection_group, every_days=7)
    plain_point(vm, vm.protection_group, timezone.now() - dt.timedelta(days=30))
    _test(vm, State.PASSED, 10)

    evaluate()

    (alert,) = _open(Alert.Kind.RESTORE_TEST_OVERDUE)
    assert alert.severity == Alert.Severity.WARNING and alert.key == str(vm.pk)
    assert alert.title == "app-01 not proven recoverable for 10 days (policy: every 7 days)"
    assert "manage.py restore-test app-01" in alert.detail and "/restore-tests/" in alert.detail

    _test(vm, State.PASSED, 0.1)
    evaluate()
    assert not _open(Alert.Kind.RESTORE_TEST_OVERDUE)


def test_a_vm_never_proven_is_overdue_once_its_first_point_is_older_than_the_policy(vm):
    RestoreTestPolicy.objects.create(group=vm.protection_group, every_days=1)
    point = plain_point(vm, vm.protection_group, timezone.now() - dt.timedelta(hours=2))
    evaluate()
    assert not _open(Alert.Kind.RESTORE_TEST_OVERDUE)  # protected for less than a day: not late yet

    point.created = timezone.now() - dt.timedelta(days=2)
    point.save(update_fields=["created"])
    evaluate()

    (alert,) = _open(Alert.Kind.RESTORE_TEST_OVERDUE)
    assert alert.title == "app-01 never proven recoverable (policy: every 1 day)"
    assert "never proven" in alert.detail


def test_no_policy_or_a_disabled_one_raises_no_overdue_alert(vm):
    plain_point(vm, vm.protection_group, timezone.now() - dt.timedelta(days=30))
    evaluate()
    RestoreTestPolicy.objects.create(group=vm.protection_group, every_days=7, enabled=False)
    evaluate()

    assert not _open(Alert.Kind.RESTORE_TEST_OVERDUE)
