"""The whole-VM restore form (a new VM elsewhere, or over the original after a typed confirmation),
and the form granting a restore operator a protection group or a folder.

Targets (folder, pool, datastore, host, each adapter's network) are resolved by inventory.placement:
the page posts ids, the API ids or inventory paths, the command line paths or unique names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from django import forms
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from inventory import placement
from inventory.models import Datastore, Folder, Network, VirtualDisk, VirtualMachine
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


class PlacementField(forms.ModelChoiceField):
    """A restore target of one kind (inventory.placement.KINDS), given by id or by inventory path (or
    unique name), shown by path."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__(placement.KINDS[kind].model._default_manager.none(), **kwargs)
        self.kind = kind

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        if self.queryset is None:
            raise forms.ValidationError("Nothing to choose from.", code="invalid_choice")
        try:
            return placement.resolve(self.kind, value, self.queryset)
        except placement.PlacementError as exc:
            raise forms.ValidationError(str(exc), code="invalid_choice") from None

    def label_from_instance(self, obj: Any) -> str:
        return placement.label(obj)


class _DatastoreField(PlacementField):
    def label_from_instance(self, obj: Datastore) -> str:
        if not obj.capacity_bytes:
            return placement.label(obj)
        return f"{placement.label(obj)} ({free_space(obj)})"


def free_space(datastore: Datastore) -> str:
    """ "41 GiB free of 100 GiB" """
    return f"{datastore.free_bytes / 2**30:,.0f} GiB free of {datastore.capacity_bytes / 2**30:,.0f} GiB"


NIC_FIELD_PREFIX = "nic_"
DISCONNECTED_LABEL = "Disconnected"


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
    folder = PlacementField("folder", required=False)
    pool = PlacementField("pool", required=False, label="Resource pool")
    datastore = _DatastoreField("datastore", required=False)
    host = PlacementField("host", required=False, label="Host (optional)")
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
        for kind in ("folder", "pool", "datastore", "host"):
            _set_queryset(self, kind, placement.candidates(kind, vm))
        self._add_nic_fields()
        self._mapping_errors: list[str] = []
        mapping = self.data.get("networks") if isinstance(self.data, Mapping) else None
        if isinstance(mapping, Mapping):  # the API's {"old network or adapter": new network or null}
            self.data = {**self.data, **self.nic_data(mapping)}
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
        for error in self._mapping_errors:
            self.add_error(None, error)
        self._default_unnamed_nics(data)
        return data

    # ---- network adapters of a new VM ----

    @property
    def beside_original(self) -> bool:
        """A new VM would run beside the original, which still exists: its adapters start disconnected
        unless a network is chosen, so two machines with one identity never share a network."""
        return self.point.vm.removed_at is None

    def captured_nics(self) -> list[dict[str, Any]]:
        return [nic for nic in (self.point.config or {}).get("nics") or [] if isinstance(nic.get("key"), int)]

    def target_fields(self) -> list[forms.BoundField]:
        """The fields the page lists one after another: all but the mode and the adapters' networks."""
        return [field for field in self if field.name != "mode" and not field.name.startswith(NIC_FIELD_PREFIX)]

    def nic_fields(self) -> list[forms.BoundField]:
        return [self[f"{NIC_FIELD_PREFIX}{nic['key']}"] for nic in self.captured_nics()]

    def _add_nic_fields(self) -> None:
        networks = placement.candidates("network", self.point.vm)
        for nic in self.captured_nics():
            name = f"{NIC_FIELD_PREFIX}{nic['key']}"
            field = PlacementField(
                "network",
                required=False,
                empty_label=DISCONNECTED_LABEL,
                label=f"{nic.get('label') or 'Network adapter'}, device {nic['key']} "
                f"(was on {nic.get('network') or 'no network'})",
            )
            field.queryset = networks
            field.initial = self._default_network(nic, networks)
            self.fields[name] = field

    def _default_network(self, nic: dict[str, Any], networks: QuerySet[Network]) -> int | None:
        """Beside the original: disconnected. Otherwise the network of the captured name, if here."""
        if self.beside_original or not nic.get("network"):
            return None
        same = networks.filter(name=nic["network"]).values_list("pk", flat=True)[:2]
        return same[0] if len(same) == 1 else None

    def _default_unnamed_nics(self, data: dict[str, Any]) -> None:
        """An adapter the request does not mention (API, command line) gets the page's default."""
        for nic in self.captured_nics():
            name = f"{NIC_FIELD_PREFIX}{nic['key']}"
            if name not in self.data:
                pk = self.fields[name].initial
                data[name] = Network.objects.filter(pk=pk).first() if pk else None

    def nic_data(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Form data (nic_<key> fields) for a mapping {captured network name, adapter label or device
        key: network id, path or name; None or "" for disconnected}. A name matching no adapter is an
        error of the form."""
        nics = self.captured_nics()
        out: dict[str, Any] = {}
        for old, new in mapping.items():
            matched = [
                nic for nic in nics if str(old) in (str(nic["key"]), nic.get("label") or "", nic.get("network") or "")
            ]
            if not matched:
                known = ", ".join(f"{nic.get('label')} (on {nic.get('network') or 'no network'})" for nic in nics)
                self._mapping_errors.append(
                    f"{old!r} is neither a network nor an adapter of the VM at this point "
                    f"(its adapters: {known or 'none'})."
                )
            for nic in matched:
                out[f"{NIC_FIELD_PREFIX}{nic['key']}"] = "" if new is None else new
        return out

    def nic_networks(self) -> dict[str, int | None]:
        """Each captured adapter's key -> the id of its network, or None (disconnected)."""
        data = self.cleaned_data
        return {
            str(nic["key"]): (chosen.pk if (chosen := data.get(f"{NIC_FIELD_PREFIX}{nic['key']}")) else None)
            for nic in self.captured_nics()
        }

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
        target = {
            "mode": "new",
            "name": data["name"].strip(),
            "folder_id": data["folder"].pk,
            "pool_id": data["pool"].pk,
            "datastore_id": data["datastore"].pk,
            "host_id": data["host"].pk if data.get("host") else None,
        }
        if self.captured_nics():  # each adapter's network id, or None for disconnected
            target["nics"] = self.nic_networks()
        return target


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
