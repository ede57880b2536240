"""Forms of the Directory settings page: the connection (tested before it is saved) and group mappings."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import Group

from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from inventory.models import Folder
from protection.models import ProtectionGroup
from teams.directory import DirectorySettings
from teams.models import DirectoryConfig

# Changing where the stored bind password would be sent asks for it again: a stored secret never
# goes to a server the administrator did not type it for.
PASSWORD_BOUND_TO = ("server_uri", "start_tls", "ca_file")


class DirectoryForm(forms.Form):
    server_uri = forms.CharField(
        max_length=512, label="Server", help_text="ldaps://dc1.corp.example, or ldap://… with StartTLS"
    )
    start_tls = forms.BooleanField(required=False, label="StartTLS (for ldap:// addresses)")
    ca_file = forms.CharField(
        max_length=1024,
        required=False,
        label="CA file",
        help_text="A PEM file on this server with the CA that signed the directory's certificate; "
        "blank: the system's trusted CAs.",
    )
    bind_dn = forms.CharField(max_length=512, required=False, label="Bind account (DN)")
    bind_password = forms.CharField(
        required=False,
        label="Bind account's password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Kept encrypted and never shown. Blank keeps the stored one, unless the server, "
        "StartTLS or CA file changes.",
    )
    user_search_base = forms.CharField(
        max_length=512, label="User search base", help_text="OU=Staff,DC=corp,DC=example"
    )
    user_search_filter = forms.CharField(
        max_length=512,
        initial="(sAMAccountName=%(user)s)",
        label="User filter",
        help_text="%(user)s is the name typed at sign-in; (uid=%(user)s) for OpenLDAP.",
    )
    group_search_base = forms.CharField(max_length=512, label="Group search base")
    group_type = forms.ChoiceField(choices=DirectoryConfig.GroupType.choices, label="Groups")
    enabled = forms.BooleanField(required=False, initial=True, label="Sign-in with the directory is on")
    test_user = forms.CharField(
        max_length=150,
        label="Test with user",
        help_text="A directory user name to look up: their groups and roles are shown.",
    )

    def __init__(self, *args: Any, stored: DirectoryConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored = stored

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("bind_password") and self.stored.bind_password:
            moved = [name for name in PASSWORD_BOUND_TO if data.get(name) != getattr(self.stored, name)]
            if moved and self.stored.server_uri:
                self.add_error(
                    "bind_password", "Enter the bind password again: the server or its TLS settings changed."
                )
        return data

    def directory_settings(self) -> DirectorySettings:
        data = self.cleaned_data
        return DirectorySettings(
            server_uri=data["server_uri"].strip(),
            start_tls=data["start_tls"],
            ca_file=data["ca_file"].strip(),
            bind_dn=data["bind_dn"].strip(),
            bind_password=data["bind_password"] or self.stored.bind_password,
            user_search_base=data["user_search_base"].strip(),
            user_search_filter=data["user_search_filter"].strip(),
            group_search_base=data["group_search_base"].strip(),
            group_type=data["group_type"],
        )


def initial_from(config: DirectoryConfig) -> dict[str, Any]:
    fields = ("server_uri", "start_tls", "ca_file", "bind_dn", "user_search_base", "user_search_filter")
    initial: dict[str, Any] = {name: getattr(config, name) for name in fields}
    initial.update(group_search_base=config.group_search_base, group_type=config.group_type)
    initial["enabled"] = config.enabled or not config.server_uri
    return initial


class TestForm(forms.Form):
    """The test alone, for settings from the environment (nothing to save)."""

    test_user = forms.CharField(max_length=150, label="Test with user")


class FolderChoice(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.path)


class MappingForm(forms.Form):
    external_group = forms.CharField(
        max_length=512, label="Directory group (DN)", help_text="CN=Helpdesk,OU=Groups,DC=corp,DC=example"
    )
    role = forms.ModelChoiceField(queryset=Group.objects.none(), required=False, label="Role", empty_label="(no role)")
    grant_groups = forms.ModelMultipleChoiceField(
        queryset=ProtectionGroup.objects.none(), required=False, label="May restore files from protection groups"
    )
    grant_folders = FolderChoice(
        queryset=Folder.objects.none(), required=False, label="and from folders (with their subfolders)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        roles = Group.objects.filter(name__in=(BACKUP_ADMIN, RESTORE_OPERATOR, AUDITOR)).order_by("name")
        self.fields["role"].queryset = roles  # type: ignore[attr-defined]
        self.fields["grant_groups"].queryset = ProtectionGroup.objects.order_by("name")  # type: ignore[attr-defined]
        folders = Folder.objects.filter(removed_at__isnull=True).order_by("path")
        self.fields["grant_folders"].queryset = folders  # type: ignore[attr-defined]
