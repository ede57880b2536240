"""What members of a directory group get: a role and restore grants.

Directory (LDAP / Active Directory) and Microsoft Entra ID users get their roles and grants from these
mappings, worked out again at every sign-in (teams.mapping), so leaving the group in the directory
removes the role at the next sign-in.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models


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
