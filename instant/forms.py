"""The instant recovery pages' forms: start a VM from a point (name, host, network) and migrate a
running one to a datastore. Hosts and datastores are named by inventory path (inventory.placement)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from instant.models import InstantRecovery
from inventory import placement
from inventory.models import Datastore, Host
from recovery.forms import PlacementField, field_of
from vault.models import RecoveryPoint


class StartForm(forms.Form):
    name = forms.CharField(max_length=80, label="Name of the new VM")
    host = PlacementField("host", required=False, label="Host", empty_label="The VM's own host")
    connect_network = forms.BooleanField(
        required=False,
        label="Connect its network adapters",
        help_text="Left disconnected by default: the original may still be running with the same identity.",
    )

    def __init__(self, point: RecoveryPoint, data: Any = None) -> None:
        super().__init__(data, initial={"name": point.vm.name if point.vm.removed_at else f"{point.vm.name}-instant"})
        field_of(self, "host", PlacementField).queryset = placement.candidates("host", point.vm)


class MigrateForm(forms.Form):
    datastore = PlacementField("datastore", label="Target datastore", empty_label=None)

    def __init__(self, recovery: InstantRecovery, data: Any = None) -> None:
        super().__init__(data, auto_id=f"id_%s_{recovery.pk}")
        field_of(self, "datastore", PlacementField).queryset = target_datastores(recovery)


def target_datastores(recovery: InstantRecovery) -> QuerySet[Datastore]:
    """The datastores of the datacenter of the host the VM runs on, by path; none once the original VM
    (whose vCenter the recovery is in) has left the inventory."""
    vm = recovery.source_vm
    if vm is None:
        return Datastore.objects.none()
    host = Host.objects.filter(vcenter_id=vm.vcenter_id, moref=recovery.host_moref).first()
    datacenter = host.datacenter_id if host is not None else vm.datacenter_id
    if datacenter is None:
        return Datastore.objects.none()
    found = Datastore.objects.filter(vcenter_id=vm.vcenter_id, datacenter_id=datacenter)
    return found.exclude(name=recovery.datastore_name or "").order_by("inventory_path", "name", "pk")
