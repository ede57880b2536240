from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from audit.models import AuditEntry

SYSTEM_ACTOR = "system"


def entry(
    actor: Any,
    action: str,
    *,
    target: models.Model | None = None,
    target_label: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """An unsaved audit row; `actor` is a user, or a string naming an automatic actor."""
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEntry(
        actor=user,
        actor_name=user.get_username() if user else (actor if isinstance(actor, str) else SYSTEM_ACTOR),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:255],
        details=details or {},
    )


def record(actor: Any, action: str, **kwargs: Any) -> AuditEntry:
    """Write one audit row. Call it inside the transaction of the change it describes."""
    row = entry(actor, action, **kwargs)
    row.save()
    return row


def record_many(rows: Iterable[AuditEntry]) -> None:
    """Write many audit rows at once (a sync that moves thousands of VMs must not do one INSERT each)."""
    AuditEntry.objects.bulk_create(list(rows), batch_size=1000)
