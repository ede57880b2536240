"""Inventory paths as vCenter's own APIs want them; the inventory owns how its names are written."""

from __future__ import annotations

from inventory import vcenter
from inventory.models import VirtualMachine


def datacenter_path(vm: VirtualMachine) -> str:
    """The datacenter's name as the datastore HTTP API's dcPath wants it (escaped as vCenter stores it)."""
    return vcenter.escape_name(vm.datacenter.name) if vm.datacenter else ""
