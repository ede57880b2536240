"""Pins: a recovery point held while something uses it (an instant recovery runs from it).

A pinned point is never removed from any tier: `vault.actions._remove_point` (every delete and prune
goes through it) refuses it with `pin_refusal`'s sentence, retention keeps it past its expiry and says
so in the job log, reconcile leaves its row, and tiering leaves its vault chunks in their tier. GC
needs nothing of its own: it keeps every chunk an existing point references, and a pinned point
exists. Pinning and removing take the point's row lock (SELECT ... FOR UPDATE), so a pin and a
delete never cross: the pin either comes first and the delete sees it, or the delete finishes first
and `pin` finds no point and refuses.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.actions import record
from vault.actions import VaultActionError
from vault.models import PointPin, RecoveryPoint

__all__ = ["PointPin", "is_pinned", "pin", "pins_of", "unpin"]


def pin(point: RecoveryPoint, reason: str, actor: Any) -> PointPin:
    """Pin `point` for `reason` (e.g. "instant recovery 12"), audited; VaultActionError when the point
    has been deleted meanwhile."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a pin needs a reason, e.g. 'instant recovery 12'")
    with transaction.atomic():
        # of=("self",): the point's row only, as `_remove_point` locks it.
        locked = RecoveryPoint.objects.select_for_update(of=("self",)).select_related("vm").filter(pk=point.pk)
        row = locked.first()
        if row is None:
            raise VaultActionError("This recovery point no longer exists.")
        made = PointPin.objects.create(point=row, reason=reason[:200], created_by=_actor_name(actor))
        details = {"point": str(row.pk), "vm": row.vm.name, "reason": made.reason, "pin": made.pk}
        record(actor, "point.pin", target=row, details=details)
    return made


def unpin(pin: PointPin, actor: Any) -> None:
    """Remove a pin, audited. Removing one already gone does nothing (a cleanup may run twice)."""
    with transaction.atomic():
        row = PointPin.objects.select_for_update().select_related("point__vm").filter(pk=pin.pk).first()
        if row is None:
            return
        point = row.point
        details = {"point": str(point.pk), "vm": point.vm.name, "reason": row.reason, "pin": row.pk}
        row.delete()
        record(actor, "point.unpin", target=point, details=details)


def is_pinned(point: RecoveryPoint) -> bool:
    return PointPin.objects.filter(point_id=point.pk).exists()


def pins_of(point: RecoveryPoint) -> list[PointPin]:
    return list(PointPin.objects.filter(point_id=point.pk))


def _actor_name(actor: Any) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return str(actor.get_username())[:150]
    return str(actor or "system")[:150]
