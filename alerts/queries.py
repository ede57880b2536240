"""What the Alerts page and the navigation read."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from alerts.models import Alert

STATUSES = [("open", "Open"), ("acknowledged", "Acknowledged"), ("resolved", "Resolved")]
STATUS_FILTERS = {
    "open": {"resolved_at__isnull": True, "acknowledged_at__isnull": True},
    "acknowledged": {"resolved_at__isnull": True, "acknowledged_at__isnull": False},
    "resolved": {"resolved_at__isnull": False},
}


def alert_list(status: str = "", kind: str = "") -> QuerySet[Alert]:
    """Open alerts first (critical before warning), then acknowledged ones, then resolved; newest first."""
    alerts = Alert.objects.select_related("acknowledged_by")
    if status in STATUS_FILTERS:
        alerts = alerts.filter(**STATUS_FILTERS[status])
    if kind in Alert.Kind.values:
        alerts = alerts.filter(kind=kind)
    rank = Case(
        When(resolved_at__isnull=False, then=Value(2)),
        When(acknowledged_at__isnull=False, then=Value(1)),
        default=Value(0),
        output_field=IntegerField(),
    )
    critical_first = Case(When(severity=Alert.Severity.CRITICAL, then=Value(0)), default=Value(1))
    return alerts.annotate(rank=rank, critical_first=critical_first).order_by(
        "rank", "critical_first", "-opened_at", "-pk"
    )


def open_unacknowledged_count() -> int:
    return Alert.objects.filter(resolved_at__isnull=True, acknowledged_at__isnull=True).count()
