"""Signals the inventory app sends, so apps above it can react without inventory importing them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.dispatch import Signal

from inventory.models import VirtualMachine

# Sent with `vm_ids` (VirtualMachine primary keys whose inventory or do-not-protect flag changed) and
# `actor` (the user who changed them, or None for a sync or the watcher) inside the transaction that
# changed them, so whatever a receiver writes (protection's membership refresh and its audit rows)
# commits or rolls back with the change. A receiver may return counts; `joined` is the number of
# those VMs that joined a protection group, which sync results report.
vms_changed = Signal()


def announce_vms_changed(vm_ids: Iterable[int], actor: Any = None) -> int:
    """Tell the apps above that these VMs changed; returns how many joined a protection group."""
    responses = vms_changed.send(sender=VirtualMachine, vm_ids=list(vm_ids), actor=actor)
    return sum(_joined(response) for _, response in responses)


def _joined(response: object) -> int:
    return int(response.get("joined", 0)) if isinstance(response, Mapping) else 0
