"""An instant recovery still running from its backup after INSTANT_ALERT_HOURS opens a warning; it
resolves once the VM is migrated or stopped."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from alerts.evaluation import evaluate
from alerts.models import Alert
from instant.models import InstantRecovery

pytestmark = pytest.mark.django_db


def _running(started_hours_ago: float) -> InstantRecovery:
    row = InstantRecovery.objects.create(
        vm_name="web-01-instant",
        host_moref="host-1",
        host_name="esx01",
        folder_moref="group-v1",
        pool_moref="resgroup-1",
        state=InstantRecovery.State.RUNNING,
        overlay_bytes=5 * 1024**3,
    )
    InstantRecovery.objects.filter(pk=row.pk).update(started=timezone.now() - dt.timedelta(hours=started_hours_ago))
    return row


def test_a_recovery_running_longer_than_the_setting_opens_a_warning(settings):
    settings.INSTANT_ALERT_HOURS = 24
    _running(1)
    long_one = _running(30)
    evaluate()
    alert = Alert.objects.get(kind=Alert.Kind.INSTANT_RUNNING_LONG)
    assert alert.key == str(long_one.pk) and alert.severity == Alert.Severity.WARNING
    assert "web-01-instant has run from its backup for over 24 hours" in alert.title
    assert "5.0\xa0GB" in alert.detail and "instant-recovery migrate" in alert.detail


def test_the_alert_resolves_once_the_vm_is_migrated(settings):
    settings.INSTANT_ALERT_HOURS = 2
    row = _running(3)
    evaluate()
    assert Alert.objects.filter(kind=Alert.Kind.INSTANT_RUNNING_LONG, resolved_at__isnull=True).count() == 1
    InstantRecovery.objects.filter(pk=row.pk).update(state=InstantRecovery.State.FINISHED)
    evaluate()
    assert not Alert.objects.filter(kind=Alert.Kind.INSTANT_RUNNING_LONG, resolved_at__isnull=True).exists()
