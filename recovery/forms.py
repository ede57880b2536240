"""The whole-VM restore form: a new VM elsewhere, or over the original after a typed confirmation."""

from __future__ import annotations

from typing import Any

from django import forms

from inventory.models import Datastore, Folder, Host, ResourcePool, VirtualDisk, VirtualMachine
from vault.models import RecoveryPoint


class RestoreVmForm(forms.Form):
    MODES = [
        ("new", "As a new VM (the original is not touched)"),
        ("overwrite", "Over the original VM"),
        ("disk", "One disk into an existing VM (replaces that VM's disk)"),
    ]

    mode = forms.ChoiceField(choices=MODES, widget=forms.RadioSelect, initial="new")
    name = forms.CharField(max_length=80, required=False, label="New VM name")
    folder = forms.ModelChoiceField(Folder.objects.none(), required=False)
    pool = forms.ModelChoiceField(ResourcePool.objects.none(), required=False, label="Resource pool")
    datastore = forms.ModelChoiceField(Datastore.objects.none(), required=False)
    host = forms.ModelChoiceField(Host.objects.none(), required=False, label="Host (optional)")
    source_disk = forms.TypedChoiceField(coerce=int, required=False, label="Disk of the point")
    target_disk = forms.ModelChoiceField(VirtualDisk.objects.none(), required=False, label="Replace this disk")
    confirm = forms.CharField(
        required=False,
        label="Type the name of the VM that will be overwritten to confirm",
        help_text="It is powered off and the disks overwritten.",
    )

    def __init__(self, *args: Any, point: RecoveryPoint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.point = point
        vm = point.vm
        same_dc = {"vcenter_id": vm.vcenter_id, "datacenter_id": vm.datacenter_id}
        self.fields["folder"].queryset = Folder.objects.filter(removed_at__isnull=True, **same_dc)
        self.fields["pool"].queryset = ResourcePool.objects.filter(**same_dc).order_by("name")
        self.fields["datastore"].queryset = Datastore.objects.filter(**same_dc).order_by("name")
        self.fields["host"].queryset = Host.objects.filter(**same_dc).order_by("name")
        self.fields["name"].initial = f"{vm.name}-restored"
        self.fields["source_disk"].choices = [
            (d.key, f"{d.label} ({d.capacity_bytes / 2**30:,.1f} GiB)") for d in point.disks.all()
        ]
        self.fields["target_disk"].queryset = (
            VirtualDisk.objects.filter(vm__vcenter_id=vm.vcenter_id, vm__removed_at__isnull=True)
            .select_related("vm")
            .order_by("vm__name", "key")
        )
        self.fields["target_disk"].label_from_instance = lambda d: (
            f"{d.vm.name} — {d.label} ({d.capacity_bytes / 2**30:,.1f} GiB)"
        )
        self.fields["folder"].initial = vm.folder_id
        self.fields["datastore"].label_from_instance = lambda ds: (
            f"{ds.name} ({ds.free_bytes / 2**30:,.0f} GiB free)" if ds.capacity_bytes else ds.name
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("mode") == "disk":
            return self._clean_disk(data)
        if data.get("mode") == "overwrite":
            if self.point.vm.removed_at is not None:
                raise forms.ValidationError("The original VM no longer exists in vCenter: restore it as a new VM.")
            if (data.get("confirm") or "").strip() != self.point.vm.name:
                self.add_error("confirm", f"Type {self.point.vm.name} exactly to overwrite it.")
            return data
        name = (data.get("name") or "").strip()
        if not name:
            self.add_error("name", "Give the new VM a name.")
        elif any(c in name for c in "/\\%") or name != name.strip() or len(name) > 80:
            self.add_error("name", "Up to 80 characters, without / \\ or %.")
        elif VirtualMachine.objects.filter(vcenter_id=self.point.vm.vcenter_id, name=name, removed_at__isnull=True):
            self.add_error("name", "A VM of that name exists already in this vCenter.")
        for field in ("folder", "pool", "datastore"):
            if not data.get(field):
                self.add_error(field, "Required for a new VM.")
        return data

    def _clean_disk(self, data: dict[str, Any]) -> dict[str, Any]:
        source = self.point.disks.filter(key=data.get("source_disk")).first()
        target = data.get("target_disk")
        if source is None:
            self.add_error("source_disk", "Choose a disk of the point.")
        if target is None:
            self.add_error("target_disk", "Choose the disk to replace.")
        if source is None or target is None:
            return data
        if target.capacity_bytes < source.capacity_bytes:
            self.add_error("target_disk", "That disk is smaller than the disk in the point.")
        if (data.get("confirm") or "").strip() != target.vm.name:
            self.add_error("confirm", f"Type {target.vm.name} exactly to overwrite its disk.")
        return data

    def target(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["mode"] == "overwrite":
            return {"mode": "overwrite"}
        if data["mode"] == "disk":
            disk = data["target_disk"]
            return {"mode": "disk", "source_disk": data["source_disk"], "vm_id": disk.vm_id, "disk_key": disk.key}
        return {
            "mode": "new",
            "name": data["name"].strip(),
            "folder_id": data["folder"].pk,
            "pool_id": data["pool"].pk,
            "datastore_id": data["datastore"].pk,
            "host_id": data["host"].pk if data.get("host") else None,
        }


class GrantForm(forms.Form):
    user = forms.ModelChoiceField(queryset=None, label="Restore operator")  # set in __init__
    group = forms.ModelChoiceField(queryset=None, required=False, label="Protection group")
    folder = forms.ModelChoiceField(queryset=None, required=False, label="or a folder (with its subfolders)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models import Q

        from protection.models import ProtectionGroup

        super().__init__(*args, **kwargs)
        perm = Q(groups__permissions__codename="browse_recoverypoints") | Q(
            user_permissions__codename="browse_recoverypoints"
        )
        self.fields["user"].queryset = (
            get_user_model().objects.filter(perm, is_active=True).distinct().order_by("username")
        )
        self.fields["group"].queryset = ProtectionGroup.objects.order_by("name")
        self.fields["folder"].queryset = Folder.objects.filter(removed_at__isnull=True).order_by("path")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("group")) == bool(data.get("folder")):
            raise forms.ValidationError("Choose a protection group or a folder (one of them).")
        return data
