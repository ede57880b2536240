from __future__ import annotations

from typing import Any, TypeVar
from zoneinfo import available_timezones

from django import forms

from inventory.models import Folder, VirtualDisk, VirtualMachine
from protection.actions import POLICY_FIELDS, Selection
from protection.models import Policy, ProtectionGroup
from protection.schedule import ScheduleError, parse_schedule


class GroupForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    folders = forms.ModelMultipleChoiceField(Folder.objects.filter(removed_at__isnull=True), required=False)
    vms = forms.ModelMultipleChoiceField(VirtualMachine.objects.filter(removed_at__isnull=True), required=False)
    excluded_vms = forms.ModelMultipleChoiceField(VirtualMachine.objects.all(), required=False)
    excluded_disks = forms.ModelMultipleChoiceField(VirtualDisk.objects.all(), required=False)

    def __init__(self, *args, instance: ProtectionGroup | None = None, **kwargs) -> None:
        self.instance = instance
        super().__init__(*args, **kwargs)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = ProtectionGroup.objects.filter(name__iexact=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("Another group already has this name.")
        return name

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not self.errors and not data.get("folders") and not data.get("vms"):
            raise forms.ValidationError("Select at least one folder or VM.")
        return data

    def selection(self) -> Selection:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return Selection(
            folder_ids=[f.pk for f in data.get("folders") or []],
            vm_ids=[v.pk for v in data.get("vms") or []],
            excluded_vm_ids=[v.pk for v in data.get("excluded_vms") or []],
            excluded_disk_ids=[d.pk for d in data.get("excluded_disks") or []],
        )

    @classmethod
    def initial_for(cls, group: ProtectionGroup) -> dict:
        return {
            "name": group.name,
            "description": group.description,
            "folders": list(group.folders.all()),
            "vms": list(group.vms.all()),
            "excluded_vms": list(group.excluded_vms.all()),
            "excluded_disks": list(group.excluded_disks.all()),
        }


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = POLICY_FIELDS
        labels = {
            "local_days": "Keep on disk (days)",
            "local_count": "Keep on disk (newest points)",
            "fallback_to_crash": "Fall back to crash-consistent when quiescing fails",
            "replicate": "Replicate to the vault",
            "window_hours": "Backup window (hours)",
        }

    def clean_timezone(self) -> str:
        zone = self.cleaned_data["timezone"].strip()
        if zone not in available_timezones():
            raise forms.ValidationError("Unknown time zone: use a name like Europe/Berlin, America/New_York or UTC.")
        return zone

    def clean_local_days(self) -> int | None:
        return _range(self.cleaned_data.get("local_days"), 1, 448, "Local retention is 1 to 448 days.")

    def clean_local_count(self) -> int | None:
        return _range(self.cleaned_data.get("local_count"), 1, 448, "Keep between 1 and 448 points.")

    def clean_parallelism(self) -> int:
        parallelism: int = self.cleaned_data["parallelism"]  # a required field: a number once it got here
        return _range(parallelism, 1, 16, "Back up 1 to 16 VMs at once.")

    def clean_window_hours(self) -> int | None:
        return _range(self.cleaned_data.get("window_hours"), 1, 24, "The window is 1 to 24 hours, or empty.")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if "schedule" in data and "timezone" in data:
            try:
                data["schedule"] = str(parse_schedule(data["schedule"], data["timezone"]))
            except ScheduleError as exc:
                self.add_error("schedule", str(exc))
        if not self.errors and data.get("local_days") is None and data.get("local_count") is None:
            self.add_error("local_days", "Keep points for a number of days, a number of points, or both.")
        for name in ("vault_daily", "vault_weekly", "vault_monthly", "vault_yearly"):
            if data.get(name) is not None and data[name] > 1000:
                self.add_error(name, "At most 1000.")
        if data.get("replicate") and not any(
            data.get(n) for n in ("vault_daily", "vault_weekly", "vault_monthly", "vault_yearly")
        ):
            self.add_error("vault_daily", "Replication needs at least one vault retention count above zero.")
        return data

    def values(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


_Number = TypeVar("_Number", bound=int | None)


def _range(value: _Number, low: int, high: int, message: str) -> _Number:
    """The value as given, if it is empty or between low and high."""
    if value is not None and not low <= value <= high:
        raise forms.ValidationError(message)
    return value
