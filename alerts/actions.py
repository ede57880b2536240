"""Changes people make to alerts. Opening and resolving belong to alerts.evaluation alone."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from alerts.models import Alert
from audit.actions import record


def acknowledge(user: Any, alert: Alert) -> bool:
    """Mark an open alert as seen and being handled; False when it was already acknowledged or resolved.

    Acknowledging silences nothing: the alert still resolves (and notifies) by itself.
    """
    with transaction.atomic():
        now = timezone.now()
        updated = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True, resolved_at__isnull=True).update(
            acknowledged_by=user, acknowledged_at=now
        )
        if updated:
            record(
                user,
                "alert.acknowledge",
                target=alert,
                target_label=alert.title,
                details={"kind": alert.kind, "key": alert.key, "severity": alert.severity},
            )
    return bool(updated)
