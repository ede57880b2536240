"""Notifications go out once when an alert opens and once when it resolves, by email and webhook."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging

import pytest
from django.core import mail
from django.utils import timezone

from alerts.evaluation import evaluate
from alerts.models import Alert
from audit.models import AuditEntry
from jobs.models import JobRun
from tests.alerts.conftest import RECIPIENTS, WEBHOOK_SECRET
from tests.factories.jobs import backup_run

pytestmark = pytest.mark.django_db
Status = JobRun.Status


@pytest.fixture
def run_evaluation(django_capture_on_commit_callbacks):
    """Evaluate as the cron job does: notifications are sent once the transaction commits."""

    def run(now: dt.datetime | None = None):
        with django_capture_on_commit_callbacks(execute=True):
            return evaluate(now)

    return run


@pytest.mark.smoke
def test_a_failed_backup_opens_an_alert_and_notifies_exactly_once(vm, channels, receiver, run_evaluation):
    receiver.start()
    run = backup_run(vm, Status.FAILED, error="The datastore ds1 is full.")

    changes = run_evaluation()

    alert = Alert.objects.get()
    assert [a.pk for a in changes.opened] == [alert.pk] and alert.is_open
    assert (alert.kind, alert.key, alert.severity) == ("failed_backup", str(vm.pk), "critical")
    assert alert.title == "Backup of app-01 failed" and "The datastore ds1 is full." in alert.detail
    assert alert.target_url() == f"/inventory/vms/{vm.pk}/" and alert.job_id == run.pk
    assert alert.notified_open and not alert.notified_resolved
    (message,) = mail.outbox
    assert message.subject == "[VM Backup] OPEN critical: Backup of app-01 failed"
    assert message.to == RECIPIENTS and f"/alerts/{alert.pk}/" in message.body
    (headers, body) = receiver.requests[0]
    assert len(receiver.requests) == 1
    expected = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-vmbackup-signature"] == f"sha256={expected}"
    assert headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["event"] == "open" and str(sent["timestamp"]) == headers["x-vmbackup-timestamp"]
    assert sent["alert"]["id"] == alert.pk and sent["alert"]["kind"] == "failed_backup"
    assert sent["alert"]["title"] == "Backup of app-01 failed" and sent["alert"]["severity"] == "critical"
    assert sent["alert"]["url"] == f"/alerts/{alert.pk}/" and sent["alert"]["job_id"] == str(run.pk)
    assert sent["alert"]["target"] == {
        "type": "inventory.virtualmachine",
        "id": str(vm.pk),
        "label": "app-01",
        "url": f"/inventory/vms/{vm.pk}/",
    }
    assert dt.datetime.fromisoformat(sent["alert"]["opened_at"]) == alert.opened_at
    assert sent["alert"]["resolved_at"] is None
    opened = AuditEntry.objects.get(action="alert.open")
    assert opened.actor_name == "alerts" and opened.target_id == str(alert.pk)

    # Evaluating again refreshes the alert and sends nothing more.
    changes = run_evaluation(timezone.now() + dt.timedelta(minutes=1))
    assert not changes.opened and not changes.resolved and changes.refreshed == 1
    assert Alert.objects.count() == 1 and len(mail.outbox) == 1 and len(receiver.requests) == 1
    alert.refresh_from_db()
    assert alert.last_seen_at > alert.opened_at

    # A later successful backup resolves it: one "resolved" email and one webhook call.
    backup_run(vm, Status.SUCCEEDED, finished=timezone.now() + dt.timedelta(minutes=1))
    changes = run_evaluation(timezone.now() + dt.timedelta(minutes=2))
    alert.refresh_from_db()
    assert [a.pk for a in changes.resolved] == [alert.pk] and alert.resolved_at is not None
    assert alert.notified_resolved
    assert [m.subject for m in mail.outbox][1:] == ["[VM Backup] RESOLVED critical: Backup of app-01 failed"]
    assert receiver.events() == ["open", "resolved"]
    resolved = json.loads(receiver.requests[1][1])["alert"]
    assert dt.datetime.fromisoformat(resolved["resolved_at"]) == alert.resolved_at and resolved["status"] == "resolved"
    assert AuditEntry.objects.filter(action="alert.resolve", target_id=str(alert.pk), actor_name="alerts").exists()

    run_evaluation(timezone.now() + dt.timedelta(minutes=3))
    assert len(mail.outbox) == 2 and len(receiver.requests) == 2


def test_a_condition_that_comes_back_opens_a_new_alert(vm, channels, receiver, run_evaluation):
    receiver.start()
    now = timezone.now()
    backup_run(vm, Status.ERRORED, error="KeyError: 'disk'", finished=now - dt.timedelta(hours=2))
    run_evaluation(now)
    backup_run(vm, Status.SUCCEEDED, finished=now - dt.timedelta(hours=1))
    run_evaluation(now)
    backup_run(vm, Status.FAILED, error="vCenter refused the snapshot.", finished=now)
    run_evaluation(now)

    first, second = Alert.objects.order_by("pk")
    assert first.resolved_at is not None and second.is_open and "refused the snapshot" in second.detail
    assert receiver.events() == ["open", "resolved", "open"] and len(mail.outbox) == 3


def test_a_cancelled_backup_neither_opens_nor_resolves(vm, channels, run_evaluation):
    now = timezone.now()
    backup_run(vm, Status.FAILED, error="Quiescing failed.", finished=now - dt.timedelta(hours=1))
    backup_run(vm, Status.CANCELLED, finished=now)
    run_evaluation(now)
    assert Alert.objects.get().is_open


def test_a_webhook_receiver_that_is_down_does_not_break_evaluation_and_is_retried(
    vm, channels, receiver, run_evaluation, caplog
):
    caplog.set_level(logging.WARNING, logger="alerts.notify")
    backup_run(vm, Status.FAILED, error="The datastore ds1 is full.")

    run_evaluation()  # nothing listens on the receiver's port yet

    alert = Alert.objects.get()
    assert alert.is_open and len(mail.outbox) == 1
    assert alert.notified_open_email and not alert.notified_open_webhook
    assert "webhook notification (open) failed" in caplog.text and "127.0.0.1" in caplog.text
    assert "T0KEN" not in caplog.text and WEBHOOK_SECRET not in caplog.text

    # Still down: the email is not sent again. Meanwhile the backup succeeds and the alert resolves.
    backup_run(vm, Status.SUCCEEDED, finished=timezone.now() + dt.timedelta(minutes=1))
    run_evaluation(timezone.now() + dt.timedelta(minutes=2))
    alert.refresh_from_db()
    assert alert.resolved_at is not None and len(mail.outbox) == 2
    assert not alert.notified_open_webhook and not alert.notified_resolved_webhook

    # Back up: both events arrive, in order, once.
    receiver.start()
    run_evaluation(timezone.now() + dt.timedelta(minutes=3))
    assert receiver.events() == ["open", "resolved"]
    run_evaluation(timezone.now() + dt.timedelta(minutes=4))
    assert receiver.events() == ["open", "resolved"] and len(mail.outbox) == 2
    alert.refresh_from_db()
    assert alert.notified_open and alert.notified_resolved


def test_a_receiver_answering_an_error_is_retried(vm, channels, receiver, run_evaluation, monkeypatch):
    from alerts import notify

    receiver.start()
    backup_run(vm, Status.FAILED, error="boom")
    monkeypatch.setattr(notify.WebhookChannel, "send", _raise(notify.NotificationFailed("HTTP 503")))
    run_evaluation()
    assert not Alert.objects.get().notified_open_webhook
    monkeypatch.undo()
    run_evaluation()
    assert receiver.events() == ["open"]


def test_without_a_webhook_secret_the_body_is_sent_unsigned(vm, channels, receiver, run_evaluation):
    channels.ALERT_WEBHOOK_SECRET = ""
    receiver.start()
    backup_run(vm, Status.FAILED, error="boom")
    run_evaluation()
    ((headers, _body),) = receiver.requests
    assert "x-vmbackup-signature" not in headers and headers["x-vmbackup-timestamp"].isdigit()


def test_channels_that_are_not_configured_send_nothing_and_never_replay(vm, settings, receiver, run_evaluation):
    settings.ALERT_EMAILS, settings.ALERT_WEBHOOK_URL = [], ""
    backup_run(vm, Status.FAILED, error="boom")
    run_evaluation()
    assert Alert.objects.get().notified_open and mail.outbox == []
    # Configured later: the old event is not replayed.
    settings.ALERT_EMAILS, settings.ALERT_WEBHOOK_URL = RECIPIENTS, receiver.url
    receiver.start()
    run_evaluation()
    assert mail.outbox == [] and receiver.requests == []


def test_the_evaluation_runs_every_minute_on_the_maintenance_queue(
    vm, channels, receiver, run_worker, django_capture_on_commit_callbacks
):
    import django_rq
    from rq import cron

    import config.cron  # noqa: F401 - registers the repeating work
    from alerts.jobs import evaluate_alerts

    assert any(
        entry["func"] is evaluate_alerts and entry["interval"] == 60 and entry["queue_name"] == "maintenance"
        for entry in cron._job_data_registry
    )
    receiver.start()
    backup_run(vm, Status.FAILED, error="boom")
    with django_capture_on_commit_callbacks(execute=True):  # django-rq enqueues on commit
        django_rq.get_queue("maintenance").enqueue(evaluate_alerts)
    with django_capture_on_commit_callbacks(execute=True):
        run_worker()
    assert Alert.objects.get().notified_open and receiver.events() == ["open"] and len(mail.outbox) == 1


def _raise(exc: Exception):
    def send(*args: object, **kwargs: object) -> None:
        raise exc

    return send
