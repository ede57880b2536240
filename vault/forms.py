"""Forms of the Vault page. Secrets are write-only: the field is always rendered empty."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from vault.actions import SETTINGS_FIELDS
from vault.models import MIN_GC_GRACE_HOURS, VaultSettings
from vault.recovery_services import RecoveryServicesConfig

_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class VaultSettingsForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        label="Connection string, SAS token or account key",
        help_text="Stored encrypted; leave empty to keep the stored one.",
    )

    account_url = forms.URLField(
        required=False,
        assume_scheme="https",
        label="Storage account URL",
        help_text="https://ACCOUNT.blob.core.windows.net",
    )

    class Meta:
        model = VaultSettings
        fields = SETTINGS_FIELDS  # what vault.actions.save_settings compares and audits
        labels = {
            "kind": "Vault",
            "auth": "Authentication",
            "upload_threads": "Parallel uploads",
            "bandwidth_mb_per_s": "Upload limit (MB/s)",
            "tier_after_days": "Move vault points to a cooler tier after (days)",
            "tier": "Cooler tier",
            "gc_grace_hours": "Garbage collection grace (hours)",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The browser refuses less than the floor too (the model field alone would say 0).
        self.fields["gc_grace_hours"].widget.attrs["min"] = MIN_GC_GRACE_HOURS

    def clean_container(self) -> str:
        value = self.cleaned_data["container"].strip()
        if not _CONTAINER.match(value):
            raise forms.ValidationError("3-63 lower-case letters, digits and single hyphens, as Azure requires.")
        return value

    def clean_upload_threads(self) -> int:
        value = self.cleaned_data["upload_threads"]
        if not 1 <= value <= 32:
            raise forms.ValidationError("Between 1 and 32.")
        return value

    def clean_gc_grace_hours(self) -> int:
        value = self.cleaned_data["gc_grace_hours"]
        if value < MIN_GC_GRACE_HOURS:
            # A chunk a running backup has just decided to reuse must never be swept under it.
            raise forms.ValidationError(
                "At least one hour: garbage collection must leave alone, for a while, the chunks that running "
                "backups may have just decided to reuse."
            )
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind = data.get("kind")
        if kind == VaultSettings.Kind.DIRECTORY and not (data.get("directory") or "").startswith("/"):
            self.add_error("directory", "An absolute path to a directory this server can write.")
        if kind == VaultSettings.Kind.AZURE:
            auth = data.get("auth")
            stored = self.instance.pk and self.instance.secret_encrypted
            if auth != VaultSettings.Auth.CONNECTION_STRING and not data.get("account_url"):
                self.add_error(
                    "account_url", "The storage account's blob URL, e.g. https://ACCOUNT.blob.core.windows.net."
                )
            if auth != VaultSettings.Auth.DEFAULT_CREDENTIAL and not data.get("secret") and not stored:
                self.add_error("secret", "Required for this kind of access.")
        rs = [data.get(name) or "" for name in ("rs_subscription_id", "rs_resource_group", "rs_vault_name")]
        if any(rs) and not all(rs):
            self.add_error("rs_vault_name", "Give subscription, resource group and vault name, or none of them.")
        elif all(rs):
            try:
                RecoveryServicesConfig(*rs)
            except ValueError as exc:
                self.add_error("rs_vault_name", str(exc))
        return data


class KeyImportForm(forms.Form):
    key = forms.CharField(
        label="Vault key", widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
    )


class LockForm(forms.Form):
    until = forms.DateField(label="Locked until", widget=forms.DateInput(attrs={"type": "date"}))
