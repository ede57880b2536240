"""Forms of the Users pages: a new local user, a user's roles and e-mail, one restore grant."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.actions import ROLE_NAMES
from accounts.roles import RESTORE_OPERATOR
from inventory.models import Folder
from protection.models import ProtectionGroup

ROLE_CHOICES = [(name, name) for name in ROLE_NAMES]
# A text box (the form's CSS styles text inputs), checked as an e-mail address by the field.
EMAIL_INPUT = forms.TextInput(attrs={"inputmode": "email", "autocomplete": "off"})


def _groups() -> Any:
    return ProtectionGroup.objects.order_by("name")


def _folders() -> Any:
    return Folder.objects.filter(removed_at__isnull=True).order_by("path")


class FolderChoice(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.path)


class FolderOne(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.path)


class RolesField(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ROLE_CHOICES, label="Roles", **kwargs)


class NewUserForm(forms.Form):
    username = forms.CharField(max_length=150, label="User name")
    email = forms.EmailField(required=False, label="E-mail", widget=EMAIL_INPUT)
    roles = RolesField()
    grant_groups = forms.ModelMultipleChoiceField(
        queryset=ProtectionGroup.objects.none(), required=False, label="May restore files from protection groups"
    )
    grant_folders = FolderChoice(
        queryset=Folder.objects.none(),
        required=False,
        label="and from folders (with their subfolders)",
        help_text="Ctrl-click (⌘-click) to choose more than one.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["grant_groups"].queryset = _groups()  # type: ignore[attr-defined]
        self.fields["grant_folders"].queryset = _folders()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        grants = data.get("grant_groups") or data.get("grant_folders")
        if grants and RESTORE_OPERATOR not in (data.get("roles") or []):
            raise forms.ValidationError("Grants are for restore operators: give the user that role, or no grants.")
        return data


class EditUserForm(forms.Form):
    email = forms.EmailField(required=False, label="E-mail", widget=EMAIL_INPUT)
    roles = RolesField()


class GrantForm(forms.Form):
    group = forms.ModelChoiceField(queryset=ProtectionGroup.objects.none(), required=False, label="Protection group")
    folder = FolderOne(queryset=Folder.objects.none(), required=False, label="or a folder (with its subfolders)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = _groups()  # type: ignore[attr-defined]
        self.fields["folder"].queryset = _folders()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("group")) == bool(data.get("folder")):
            raise forms.ValidationError("Choose a protection group or a folder (one of them).")
        return data
