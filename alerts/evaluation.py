"""Turning what is wrong now (alerts.conditions) into alerts: open, refresh, resolve.

`evaluate()` runs every minute (alerts.jobs, from config/cron.py). The checks read first, outside any
transaction; then one transaction applies the differences and writes an audit row per opened or
resolved alert; once it commits, the notifications still owed are sent (alerts.notify). A check that
raises is logged and its kind left as it was: a broken check must never resolve real alerts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace

from django.db import connection, transaction
from django.utils import timezone

from alerts import notify
from alerts.conditions import CHECKS, Finding
from alerts.models import Alert
from audit.actions import entry, record_many

logger = logging.getLogger(__name__)

ACTOR = "alerts"
# Fields a refresh may change (a newer error, a larger count); never a reason to notify.
REFRESHED_FIELDS = ("severity", "title", "detail", "target_type", "target_id", "target_label", "job_id")
# Serialises evaluations on PostgreSQL (SQLite's IMMEDIATE transactions already admit one writer).
ADVISORY_LOCK = 0x616C65727473  # "alerts"


@dataclass
class Changes:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    refreshed: int = 0
    failed_checks: list[str] = field(default_factory=list)


def current_findings(now: dt.datetime) -> dict[str, dict[str, Finding] | None]:
    """Findings by kind and key; None for a kind whose check failed this time."""
    found: dict[str, dict[str, Finding] | None] = {}
    for kind, check in CHECKS.items():
        try:
            found[kind] = {finding.key: finding for finding in map(_fit, check(now))}
        except Exception:
            logger.exception("The %s check failed; its alerts are left as they are until it works again", kind)
            found[kind] = None
    return found


def _fit(finding: Finding) -> Finding:
    """Long VM names must not make an INSERT fail."""
    return replace(finding, key=finding.key[:100], title=finding.title[:255], target_label=finding.target_label[:255])


def evaluate(now: dt.datetime | None = None) -> Changes:
    now = now or timezone.now()
    found = current_findings(now)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])
        changes = _apply(found, now)
        # Also retries notifications an earlier evaluation could not deliver.
        transaction.on_commit(notify.send_pending)
    return changes


def _apply(found: dict[str, dict[str, Finding] | None], now: dt.datetime) -> Changes:
    changes = Changes(failed_checks=[kind for kind, findings in found.items() if findings is None])
    open_alerts = {(a.kind, a.key): a for a in Alert.objects.filter(resolved_at__isnull=True)}
    seen = []
    for kind, findings in found.items():
        if findings is None:
            continue
        for key, finding in findings.items():
            alert = open_alerts.get((kind, key))
            if alert is None:
                changes.opened.append(_open(finding, now))
                continue
            seen.append(alert.pk)
            changed = [name for name in REFRESHED_FIELDS if _value(alert, name) != _value(finding, name)]
            if changed:
                for name in changed:
                    setattr(alert, name, getattr(finding, name))
                alert.save(update_fields=changed)
            changes.refreshed += 1
        for (alert_kind, key), alert in open_alerts.items():
            if alert_kind == kind and key not in findings:
                alert.resolved_at = now
                alert.save(update_fields=["resolved_at"])
                changes.resolved.append(alert)
    if seen:
        Alert.objects.filter(pk__in=seen).update(last_seen_at=now)
    record_many(
        [_audit("alert.open", alert) for alert in changes.opened]
        + [_audit("alert.resolve", alert) for alert in changes.resolved]
    )
    if changes.opened or changes.resolved:
        logger.info("Alerts: %d opened, %d resolved", len(changes.opened), len(changes.resolved))
    return changes


def _open(finding: Finding, now: dt.datetime) -> Alert:
    return Alert.objects.create(
        kind=finding.kind,
        key=finding.key,
        opened_at=now,
        last_seen_at=now,
        **{name: getattr(finding, name) for name in REFRESHED_FIELDS},
    )


def _value(obj: object, name: str) -> str:
    value = getattr(obj, name)
    return "" if value is None else str(value)


def _audit(action: str, alert: Alert):
    return entry(
        ACTOR,
        action,
        target=alert,
        target_label=alert.title,
        details={"kind": alert.kind, "key": alert.key, "severity": alert.severity},
    )
