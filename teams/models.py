"""What members of a directory group get: a role and restore grants.

Directory (LDAP / Active Directory) and Microsoft Entra ID users get their roles and grants from these
mappings, worked out again at every sign-in (teams.mapping), so leaving the group in the directory
removes the role at the next sign-in.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models

from lib.crypto import EncryptedText


class GroupMapping(models.Model):
    class Source(models.TextChoices):
        DIRECTORY = "directory", "Active Directory / LDAP"
        ENTRA = "entra", "Microsoft Entra ID"

    source = models.CharField(max_length=16, choices=Source.choices)
    # An LDAP group's DN (compared case-insensitively), or an Entra ID group object id or app role value.
    external_group = models.CharField(max_length=512)
    role = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    grant_groups = models.ManyToManyField("protection.ProtectionGroup", blank=True, related_name="+")
    grant_folders = models.ManyToManyField("inventory.Folder", blank=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "external_group"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_group"], name="one_mapping_per_external_group")
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} group {self.external_group}"


class DirectoryConfig(models.Model):
    """How to reach the Active Directory / LDAP server for sign-in: one row (pk 1), set on the Directory
    settings page after its test passed. LDAP_* environment variables, when LDAP_SERVER_URI is set, take
    its place (teams.directory.current_settings)."""

    class GroupType(models.TextChoices):
        ACTIVE_DIRECTORY = "active_directory", "Active Directory (group objects, nested membership)"
        GROUP_OF_NAMES = "group_of_names", "OpenLDAP groupOfNames (nested membership)"

    enabled = models.BooleanField(default=False)
    # ldaps://host[:port] or ldap://host[:port] with start_tls; plain LDAP is refused.
    server_uri = models.CharField(max_length=512, blank=True)
    start_tls = models.BooleanField(default=False)
    # A PEM file of the CA(s) that signed the server's certificate; blank: the system's trusted CAs.
    ca_file = models.CharField(max_length=1024, blank=True)
    bind_dn = models.CharField(max_length=512, blank=True)
    bind_password_encrypted = models.TextField(blank=True)
    bind_password = EncryptedText("bind_password_encrypted")
    user_search_base = models.CharField(max_length=512, blank=True)
    user_search_filter = models.CharField(max_length=512, default="(sAMAccountName=%(user)s)")
    group_search_base = models.CharField(max_length=512, blank=True)
    group_type = models.CharField(max_length=32, choices=GroupType.choices, default=GroupType.ACTIVE_DIRECTORY)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Directory {self.server_uri or '(not configured)'}"

    @classmethod
    def load(cls) -> DirectoryConfig:
        return cls.objects.get_or_create(pk=1)[0]
