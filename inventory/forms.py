from __future__ import annotations

from typing import Any

from django import forms

from inventory.actions import normalise_thumbprint
from inventory.connection import ConnectionParams
from inventory.models import VCenter
from inventory.queries import PROOF_OVERDUE, PROTECTION_FILTERS, SORTS, VmFilter


class VCenterForm(forms.Form):
    name = forms.CharField(max_length=100)
    host = forms.CharField(max_length=255, help_text="Host name or IP address of the vCenter Server")
    port = forms.IntegerField(min_value=1, max_value=65535, initial=443)
    username = forms.CharField(max_length=150, label="User name")
    # render_value=False: a stored or typed password is never sent back to the browser.
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False)
    thumbprint = forms.CharField(
        max_length=95,
        required=False,
        label="Pinned certificate thumbprint (SHA-256)",
        help_text="Trust exactly this certificate, e.g. a vCenter's self-signed one.",
    )
    verify_tls = forms.BooleanField(
        required=False,
        initial=True,
        label="Verify the certificate",
        help_text="Turn off only for a lab: anyone on the network path could then read the password.",
    )
    plain_http = forms.BooleanField(required=False, label="Plain HTTP (simulator only)")

    # Set by the view when the server's certificate is not trusted: the page offers to pin it.
    untrusted_thumbprint = ""

    def __init__(self, *args: Any, instance: VCenter | None = None, **kwargs: Any) -> None:
        self.instance = instance
        super().__init__(*args, **kwargs)
        if instance is None:
            self.fields["password"].required = True
        else:
            self.fields["password"].help_text = "Leave empty to keep the stored password."

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = VCenter.objects.filter(name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("Another connection already has this name.")
        return name

    def clean_thumbprint(self) -> str:
        try:
            return normalise_thumbprint(self.cleaned_data["thumbprint"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def params(self) -> ConnectionParams:
        data = self.cleaned_data
        return ConnectionParams(
            name=data["name"],
            host=data["host"].strip(),
            port=data["port"],
            username=data["username"],
            password=data["password"],
            protocol=VCenter.Protocol.HTTP if data["plain_http"] else VCenter.Protocol.HTTPS,
            verify_tls=data["verify_tls"] and not data["plain_http"],
            thumbprint=data["thumbprint"],
        )

    @classmethod
    def initial_for(cls, vc: VCenter) -> dict[str, Any]:
        return {
            "name": vc.name,
            "host": vc.host,
            "port": vc.port,
            "username": vc.username,
            "thumbprint": vc.thumbprint,
            "verify_tls": vc.verify_tls,
            "plain_http": vc.protocol == VCenter.Protocol.HTTP,
        }


class VMFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
    vcenter = forms.ModelChoiceField(VCenter.objects.all(), required=False, empty_label="all vCenters")
    folder = forms.IntegerField(required=False, widget=forms.HiddenInput)
    power = forms.ChoiceField(
        required=False,
        choices=[("", "any power state"), ("poweredOn", "on"), ("poweredOff", "off"), ("suspended", "suspended")],
    )
    protection = forms.ChoiceField(
        required=False,
        choices=[
            ("", "any protection"),
            *[(p, p.replace("_", " ")) for p in PROTECTION_FILTERS],
            (PROOF_OVERDUE, "not proven within policy"),
        ],
    )
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SORTS], widget=forms.HiddenInput)
    removed = forms.BooleanField(required=False, label="include removed")

    def vm_filter(self) -> VmFilter:
        """The filters from a valid form; an invalid one filters nothing (the page shows its errors)."""
        data = self.cleaned_data if self.is_valid() else {}
        return VmFilter(
            search=data.get("q"),
            vcenter_id=data["vcenter"].pk if data.get("vcenter") else None,
            folder_id=data.get("folder"),
            power_state=data.get("power"),
            protection=data.get("protection"),
            include_removed=bool(data.get("removed")),
        )

    def sort_order(self) -> str:
        """One of queries.SORTS; by name unless the form asks otherwise."""
        return (self.cleaned_data.get("sort") if self.is_valid() else None) or "name"
