"""Notifications: one email and one webhook call when an alert opens, and again when it resolves.

Never for a refresh, so a condition that lasts a week sends two messages, not ten thousand. Each
(event, channel) has a flag on the alert. A sender claims the flag with a conditional UPDATE before
sending and gives it back when sending fails, so two evaluations never send the same event twice
and a failed one is retried by the next evaluation (every minute), also after a worker restart.
A channel that is not configured counts as sent: configuring it later does not replay old events.

The webhook body is JSON; with ALERT_WEBHOOK_SECRET set, `X-VMBackup-Signature: sha256=<hex>` is the
HMAC-SHA256 of the raw body under that secret, and the body's "timestamp" equals the
`X-VMBackup-Timestamp` header (seconds since the epoch), so a receiver can refuse stale replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from alerts.models import PENDING_NOTIFICATION, Alert

logger = logging.getLogger(__name__)

TIMEOUT = 5  # seconds, for the webhook call
EVENTS = ("open", "resolved")
SIGNATURE_HEADER = "X-VMBackup-Signature"
TIMESTAMP_HEADER = "X-VMBackup-Timestamp"


class NotificationFailed(Exception):
    """Sending failed; the message names no secret (no password, no webhook URL path or query)."""


def send_pending() -> int:
    """Send every notification not sent yet, oldest alert first; returns how many were sent."""
    alerts = list(Alert.objects.filter(PENDING_NOTIFICATION).select_related("acknowledged_by").order_by("opened_at"))
    if not alerts:
        return 0
    channels = [EmailChannel(), WebhookChannel()]
    sent = 0
    try:
        for alert in alerts:
            for event in EVENTS:
                if event == "resolved" and alert.resolved_at is None:
                    continue
                for channel in channels:
                    sent += _deliver(alert, event, channel)
    finally:
        for channel in channels:
            channel.close()
    return sent


def _deliver(alert: Alert, event: str, channel: Channel) -> int:
    flag = f"notified_{event}_{channel.name}"
    if getattr(alert, flag) or channel.down:
        return 0
    if event == "resolved" and not getattr(alert, f"notified_open_{channel.name}"):
        return 0  # "resolved" never overtakes its "open"
    if not Alert.objects.filter(pk=alert.pk, **{flag: False}).update(**{flag: True}):
        return 0  # another evaluation sent it meanwhile
    setattr(alert, flag, True)
    if not channel.configured:
        return 0
    try:
        channel.send(alert, event)
    except Exception as exc:
        Alert.objects.filter(pk=alert.pk).update(**{flag: False})
        setattr(alert, flag, False)
        # One failure is enough for this round: a receiver that is down is not tried once per alert.
        channel.down = True
        logger.warning(
            "Alert %s: the %s notification (%s) failed, retried at the next evaluation: %s",
            alert.pk,
            channel.name,
            event,
            channel.describe(exc),
        )
        return 0
    return 1


class Channel:
    name = ""

    def __init__(self) -> None:
        self.down = False

    @property
    def configured(self) -> bool:
        raise NotImplementedError

    def send(self, alert: Alert, event: str) -> None:
        raise NotImplementedError

    def describe(self, exc: Exception) -> str:
        return type(exc).__name__

    def close(self) -> None:
        pass


def subject(alert: Alert, event: str) -> str:
    # One line: a title from a VM name must not add mail headers.
    title = " ".join(alert.title.split())
    return f"[VM Backup] {'OPEN' if event == 'open' else 'RESOLVED'} {alert.severity}: {title}"


def email_body(alert: Alert, event: str) -> str:
    lines = [
        alert.title,
        "",
        f"Status: {'opened' if event == 'open' else 'resolved'}",
        f"Severity: {alert.get_severity_display()}",
        f"Kind: {alert.get_kind_display()}",
        f"About: {alert.target_label or alert.key}" + (f" ({alert.target_url()})" if alert.target_url() else ""),
        f"Opened: {_local(alert.opened_at)}",
    ]
    if alert.resolved_at:
        lines.append(f"Resolved: {_local(alert.resolved_at)}")
    if alert.acknowledged_at:
        lines.append(f"Acknowledged: {_local(alert.acknowledged_at)} by {alert.acknowledged_by or 'a deleted user'}")
    lines += ["", alert.detail, "", f"In VM Backup: {alert.get_absolute_url()}"]
    return "\n".join(lines) + "\n"


class EmailChannel(Channel):
    """One message per event to ALERT_EMAILS, over one SMTP connection per round."""

    name = "email"

    def __init__(self) -> None:
        super().__init__()
        self.recipients = list(settings.ALERT_EMAILS)
        self.connection: Any = None

    @property
    def configured(self) -> bool:
        return bool(self.recipients)

    def send(self, alert: Alert, event: str) -> None:
        if self.connection is None:
            self.connection = get_connection(fail_silently=False)
            self.connection.open()
        EmailMessage(
            subject(alert, event), email_body(alert, event), to=self.recipients, connection=self.connection
        ).send()

    def describe(self, exc: Exception) -> str:
        # smtplib's messages carry the server's reply, never our password.
        return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # the connection may be what broke
                logger.debug("closing the mail connection failed", exc_info=True)


def payload(alert: Alert, event: str, timestamp: int) -> dict[str, Any]:
    return {
        "event": event,
        "timestamp": timestamp,
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "key": alert.key,
            "severity": alert.severity,
            "title": alert.title,
            "detail": alert.detail,
            "status": alert.status,
            "target": {
                "type": alert.target_type,
                "id": alert.target_id,
                "label": alert.target_label,
                "url": alert.target_url(),
            },
            "job_id": str(alert.job_id) if alert.job_id else None,
            "opened_at": _iso(alert.opened_at),
            "last_seen_at": _iso(alert.last_seen_at),
            "resolved_at": _iso(alert.resolved_at),
            "acknowledged_at": _iso(alert.acknowledged_at),
            "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by else None,
            "url": alert.get_absolute_url(),
        },
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel(Channel):
    """POST a JSON body to ALERT_WEBHOOK_URL; any 2xx answer is success (redirects are not followed)."""

    name = "webhook"

    def __init__(self) -> None:
        super().__init__()
        self.url = settings.ALERT_WEBHOOK_URL
        self.secret = settings.ALERT_WEBHOOK_SECRET
        self.session: requests.Session | None = None

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def send(self, alert: Alert, event: str) -> None:
        timestamp = int(time.time())
        body = json.dumps(payload(alert, event, timestamp), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "VM-Backup-alerts",
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        if self.session is None:
            self.session = requests.Session()
        response = self.session.post(self.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        if not 200 <= response.status_code < 300:
            raise NotificationFailed(f"HTTP {response.status_code}")

    def describe(self, exc: Exception) -> str:
        # requests' messages repeat the whole URL, whose path or query may be a token: name the host only.
        detail = str(exc) if isinstance(exc, NotificationFailed) else type(exc).__name__
        return f"{detail} from {urlsplit(self.url).hostname}"

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def _local(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
