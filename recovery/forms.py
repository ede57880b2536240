"""The whole-VM restore form (a new VM elsewhere, or over the original after a typed confirmation),
and the form granting a restore operator a protection group or a folder."""

from __future__ import annotations

from typing import Any, TypeVar

from django import forms
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from inventory.models import Datastore, Folder, Host, ResourcePool, VirtualDisk, VirtualMachine
from protection.models import ProtectionGroup
from vault.models import RecoveryPoint

_Field = TypeVar("_Field", bound=forms.Field)


def field_of(form: forms.BaseForm, name: str, kind: type[_Field]) -> _Field:
    """The form's own copy of a declared field, as the class it was declared with (form.fields is
    typed as holding plain Fields)."""
    field = form.fields[name]
    if not isinstance(field, kind):
        raise TypeError(f"{name} is a {type(field).__name__}, not a {kind.__name__}")
    return field


def _set_queryset(form: forms.BaseForm, name: str, queryset: QuerySet[Any]) -> None:
    field_of(form, name, forms.ModelChoiceField).queryset = queryset


class _DatastoreField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Datastore) -> str:
        return f"{obj.name} ({obj.free_bytes / 2**30:,.0f} GiB free)" if obj.capacity_bytes else obj.name


class _TargetDiskField(forms.ModelChoiceField):
    def label_from_instance(self, obj: VirtualDisk) -> str:
        return f"{obj.vm.name} — {obj.label} ({obj.capacity_bytes / 2**30:,.1f} GiB)"


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
    datastore = _DatastoreField(Datastore.objects.none(), required=False)
    host = forms.ModelChoiceField(Host.objects.none(), required=False, label="Host (optional)")
    source_disk = forms.TypedChoiceField(coerce=int, required=False, label="Disk of the point")
    target_disk = _TargetDiskField(VirtualDisk.objects.none(), required=False, label="Replace this disk")
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
        _set_queryset(self, "folder", Folder.objects.filter(removed_at__isnull=True, **same_dc))
        _set_queryset(self, "pool", ResourcePool.objects.filter(**same_dc).order_by("name"))
        _set_queryset(self, "datastore", Datastore.objects.filter(**same_dc).order_by("name"))
        _set_queryset(self, "host", Host.objects.filter(**same_dc).order_by("name"))
        self.fields["name"].initial = f"{vm.name}-restored"
        field_of(self, "source_disk", forms.ChoiceField).choices = [
            (d.key, f"{d.label} ({d.capacity_bytes / 2**30:,.1f} GiB)") for d in point.disks.all()
        ]
        disks = VirtualDisk.objects.filter(vm__vcenter_id=vm.vcenter_id, vm__removed_at__isnull=True)
        _set_queryset(self, "target_disk", disks.select_related("vm").order_by("vm__name", "key"))
        self.fields["folder"].initial = vm.folder_id

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
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
        source_key = data.get("source_disk")
        source = None if source_key is None else self.point.disks.filter(key=source_key).first()
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
    # The querysets are set in __init__.
    user: forms.ModelChoiceField[User] = forms.ModelChoiceField(queryset=None, label="Restore operator")
    group: forms.ModelChoiceField[ProtectionGroup] = forms.ModelChoiceField(
        queryset=None, required=False, label="Protection group"
    )
    folder: forms.ModelChoiceField[Folder] = forms.ModelChoiceField(
        queryset=None, required=False, label="or a folder (with its subfolders)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        perm = Q(groups__permissions__codename="browse_recoverypoints") | Q(
            user_permissions__codename="browse_recoverypoints"
        )
        users = User.objects.filter(perm, is_active=True).distinct().order_by("username")
        _set_queryset(self, "user", users)
        _set_queryset(self, "group", ProtectionGroup.objects.order_by("name"))
        _set_queryset(self, "folder", Folder.objects.filter(removed_at__isnull=True).order_by("path"))

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if bool(data.get("group")) == bool(data.get("folder")):
            raise forms.ValidationError("Choose a protection group or a folder (one of them).")
        return data
