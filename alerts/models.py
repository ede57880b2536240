"""Alerts: conditions that need a person's attention, opened and resolved by `alerts.evaluation`.

One open alert per (kind, key); when its condition clears it is resolved, and if it comes back
later a new alert opens, so the history of each incident stays readable.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import NoReverseMatch, reverse

# Notifications still to send: an event whose channel flag is still False (see alerts/notify.py).
PENDING_NOTIFICATION = (
    models.Q(notified_open_email=False)
    | models.Q(notified_open_webhook=False)
    | models.Q(resolved_at__isnull=False, notified_resolved_email=False)
    | models.Q(resolved_at__isnull=False, notified_resolved_webhook=False)
)


class Alert(models.Model):
    """One incident: opened when its condition appears, resolved when it clears, acknowledged by a person."""

    class Kind(models.TextChoices):
        FAILED_BACKUP = "failed_backup", "Backup failed"
        RPO_BREACH = "rpo_breach", "Recovery point objective missed"
        ORPHANED_SNAPSHOT = "orphaned_snapshot", "Leftover backup snapshot"
        REPLICATION_LAG = "replication_lag", "Replication lag"
        DAMAGED_POINT = "damaged_point", "Damaged recovery point"
        VCENTER_UNREACHABLE = "vcenter_unreachable", "vCenter unreachable"
        STORE_NEARLY_FULL = "store_nearly_full", "Local store nearly full"
        INSTANT_RUNNING_LONG = "instant_running_long", "Instant recovery running long"
        INSTANT_RESTARTED = "instant_restarted", "Instant recovery's server restarted"
        INSTANT_OVERLAY_FULL = "instant_overlay_full", "Instant recovery's writes failing"
        INSTANT_STOP_FAILING = "instant_stop_failing", "Instant recovery not stopped"
        RESTORE_TEST_FAILED = "restore_test_failed", "Restore test failed"
        RESTORE_TEST_OVERDUE = "restore_test_overdue", "Restore test overdue"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical"
        WARNING = "warning", "Warning"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What the alert is about, unique among the open alerts of its kind: a VM id, a vCenter id, "vault".
    key = models.CharField(max_length=100)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    title = models.CharField(max_length=255)
    detail = models.TextField(blank=True)
    # What to look at, as text so the alert outlives the object (like JobRun's target).
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    job_id = models.UUIDField(null=True, blank=True, help_text="The job that shows the cause, when there is one")
    opened_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # Each event is sent once per channel; a channel that is not configured counts as sent.
    notified_open_email = models.BooleanField(default=False)
    notified_open_webhook = models.BooleanField(default=False)
    notified_resolved_email = models.BooleanField(default=False)
    notified_resolved_webhook = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"], condition=models.Q(resolved_at__isnull=True), name="one_open_alert_per_kind_key"
            )
        ]
        indexes = [
            models.Index(fields=["opened_at"], condition=PENDING_NOTIFICATION, name="alert_notification_pending")
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("alerts:detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def status(self) -> str:
        """What the list shows and filters on: open, acknowledged (still open) or resolved."""
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"

    @property
    def notified_open(self) -> bool:
        return self.notified_open_email and self.notified_open_webhook

    @property
    def notified_resolved(self) -> bool:
        return self.notified_resolved_email and self.notified_resolved_webhook

    def target_url(self) -> str:
        """The page of what the alert is about (a VM, the vCenters, the Vault page), or ""."""
        route = TARGET_PAGES.get(self.target_type)
        if route is None:
            return ""
        name, with_id = route
        try:
            return reverse(name, args=[self.target_id]) if with_id else reverse(name)
        except NoReverseMatch:  # an id the URL does not take: show the label without a link
            return ""


# target_type -> (URL name, whether the URL takes target_id)
TARGET_PAGES = {
    "inventory.virtualmachine": ("inventory:vm", True),
    "inventory.vcenter": ("inventory:vcenters", False),
    "jobs.jobrun": ("jobs:detail", True),
    "vault": ("vault:index", False),
}
