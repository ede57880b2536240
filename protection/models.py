"""Protection groups: which VMs are backed up, selected by folder (recursively) or one by one.

The policy (schedule, retention, consistency) joins in issue 4; this is the selection that
auto-detect (protection/membership.py) uses to put new VMs under protection.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ProtectionGroup(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    paused = models.BooleanField(default=False)
    folders = models.ManyToManyField(
        "inventory.Folder", blank=True, related_name="protection_groups", help_text="Every VM below these folders"
    )
    vms = models.ManyToManyField(
        "inventory.VirtualMachine", blank=True, related_name="selected_by_groups", help_text="VMs chosen one by one"
    )
    excluded_vms = models.ManyToManyField(
        "inventory.VirtualMachine", blank=True, related_name="excluded_by_groups"
    )
    excluded_disks = models.ManyToManyField("inventory.VirtualDisk", blank=True, related_name="excluded_by_groups")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["name"]
        permissions = [("backup_now", "Can start a backup now")]

    def __str__(self) -> str:
        return self.name
