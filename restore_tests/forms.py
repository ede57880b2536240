"""The Restore tests page's forms: a group's restore test policy (saved by actions.save_policy) and
"Test now" (a protected VM with points, queued by actions.start_test)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Exists, OuterRef, QuerySet

from inventory.models import Datastore, Host, VirtualMachine
from recovery.forms import PlacementField, field_of
from restore_tests.actions import POLICY_FIELDS
from restore_tests.models import RestoreTestPolicy
from vault.models import RecoveryPoint

TCP_NEEDS_NETWORK = "A TCP check needs the isolated network the test VM is connected to."


class PolicyForm(forms.ModelForm):
    host = PlacementField(
        "host", required=False, label="Host for test VMs", empty_label="Each VM's own host",
        help_text="Hosts are shown by their inventory path.",
    )  # fmt: skip
    datastore = PlacementField(
        "datastore", required=False, label="Datastore for full restores", empty_label="Each VM's own datastore",
        help_text="Used only when instant recovery is not possible (the vCenter user may not mount a datastore).",
    )  # fmt: skip

    class Meta:
        model = RestoreTestPolicy
        fields = POLICY_FIELDS
        labels = {
            "enabled": "Test this group's VMs on a schedule",
            "every_days": "Prove each VM every (days)",
            "window_start": "Window starts at",
            "window_hours": "Window length (hours)",
            "max_concurrent": "Tests at once",
            "name_prefix": "Name prefix of test VMs",
            "heartbeat_seconds": "Heartbeat timeout (seconds)",
            "network": "Isolated network",
            "require_ip": "The guest must report an IP address",
            "tcp_port": "TCP port that must answer",
            "canary_path": "Canary file",
            "canary_min_bytes": "Canary minimum size (bytes)",
        }
        help_texts = {
            "window_start": "In the time zone of the group's backup schedule (HH:MM).",
            "network": "Leave empty to keep every network adapter of the test VM disconnected (the safe "
            "default). Name a port group only if it is isolated from production: the test VM boots with "
            "the same identity and addresses as the original.",
            "tcp_port": "Checked on the guest's IP address; needs the isolated network above.",
        }

    def __init__(self, data: Any = None, *, instance: RestoreTestPolicy) -> None:
        super().__init__(data, instance=instance)
        hosts = Host.objects.order_by("inventory_path", "name", "pk")
        field_of(self, "host", PlacementField).queryset = hosts
        datastores = Datastore.objects.order_by("inventory_path", "name", "pk")
        field_of(self, "datastore", PlacementField).queryset = datastores

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("tcp_port") is not None and not (cleaned.get("network") or "").strip():
            self.add_error("tcp_port", TCP_NEEDS_NETWORK)
        return cleaned

    def policy_fields(self) -> dict[str, Any]:
        """The cleaned values, as actions.save_policy takes them."""
        return {name: self.cleaned_data[name] for name in POLICY_FIELDS}


def testable_vms() -> QuerySet[VirtualMachine]:
    """VMs in the inventory that have a recovery point, by name."""
    has_points = Exists(RecoveryPoint.objects.filter(vm_id=OuterRef("pk")))
    return VirtualMachine.objects.filter(has_points, removed_at__isnull=True).order_by("name", "pk")


class _VmField(forms.ModelChoiceField):
    def label_from_instance(self, obj: VirtualMachine) -> str:
        return obj.path or obj.name


class StartTestForm(forms.Form):
    vm = _VmField(VirtualMachine.objects.none(), label="VM to test", empty_label="Choose a VM")

    def __init__(self, data: Any = None) -> None:
        super().__init__(data)
        field_of(self, "vm", _VmField).queryset = testable_vms()
