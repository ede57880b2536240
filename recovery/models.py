"""Restores (every one is recorded, whoever asked) and the grants that scope what helpdesk staff see."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Restore(models.Model):
    """One restore request (files or a whole VM): who asked for what, and how it went."""

    class Kind(models.TextChoices):
        FILES = "files", "Files and folders"
        VM = "vm", "Whole VM"

    class Status(models.TextChoices):
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTED)
    vm = models.ForeignKey("inventory.VirtualMachine", null=True, blank=True, on_delete=models.SET_NULL)
    point = models.ForeignKey("vault.RecoveryPoint", null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey("jobs.JobRun", null=True, blank=True, on_delete=models.SET_NULL)
    vm_label = models.CharField(max_length=255)
    point_label = models.CharField(max_length=64, blank=True)
    paths = models.JSONField(default=list, blank=True)
    target = models.JSONField(default=dict, blank=True, help_text="Where a whole VM went (new name, folder...)")
    bytes_restored = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        permissions = [
            ("browse_recoverypoints", "Can browse recovery points"),
            ("restore_files", "Can download files and folders from recovery points"),
            ("restore_vms", "Can restore whole VMs, including over the original"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.vm_label}"


class RestoreGrant(models.Model):
    """Lets a restore operator browse and download from the VMs of one protection group, or of one
    folder (and its subfolders). Administrators and auditors see every VM without grants."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="restore_grants")
    group = models.ForeignKey("protection.ProtectionGroup", null=True, blank=True, on_delete=models.CASCADE)
    folder = models.ForeignKey("inventory.Folder", null=True, blank=True, on_delete=models.CASCADE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "created"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(group__isnull=False, folder__isnull=True)
                | models.Q(group__isnull=True, folder__isnull=False),
                name="grant_group_xor_folder",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} may restore from {self.scope}"

    @property
    def scope(self) -> str:
        """What the grant covers: "group NAME" or "folder PATH" (the constraint makes it one of them)."""
        if self.group is not None:
            return f"group {self.group.name}"
        return f"folder {self.folder.path if self.folder is not None else '?'}"
