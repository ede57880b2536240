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
    excluded_vms = models.ManyToManyField("inventory.VirtualMachine", blank=True, related_name="excluded_by_groups")
    excluded_disks = models.ManyToManyField("inventory.VirtualDisk", blank=True, related_name="excluded_by_groups")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["name"]
        permissions = [("backup_now", "Can start a backup now")]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    """When a group's VMs are backed up, how consistent the snapshot is, and how long points are kept."""

    class Consistency(models.TextChoices):
        APPLICATION = "application", "Application-consistent (quiesced snapshot)"
        CRASH = "crash", "Crash-consistent"

    group = models.OneToOneField(ProtectionGroup, on_delete=models.CASCADE, related_name="policy")
    schedule = models.CharField(
        max_length=200, default="daily 22:00", help_text="e.g. daily 02:00,14:00 · every 4h · mon,wed,fri 22:00"
    )
    timezone = models.CharField(max_length=64, default="UTC")
    consistency = models.CharField(max_length=16, choices=Consistency.choices, default=Consistency.APPLICATION)
    fallback_to_crash = models.BooleanField(
        default=True, help_text="When quiescing fails, take a crash-consistent snapshot instead of failing."
    )
    local_days = models.PositiveSmallIntegerField(null=True, blank=True, default=14)
    local_count = models.PositiveSmallIntegerField(null=True, blank=True)
    replicate = models.BooleanField(default=True, help_text="Copy recovery points to the vault (Azure Blob storage).")
    vault_daily = models.PositiveSmallIntegerField(default=14)
    vault_weekly = models.PositiveSmallIntegerField(default=8)
    vault_monthly = models.PositiveSmallIntegerField(default=12)
    vault_yearly = models.PositiveSmallIntegerField(default=3)
    parallelism = models.PositiveSmallIntegerField(default=2, help_text="VMs of this group backed up at once.")
    window_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="No new VM starts this many hours after the scheduled time."
    )
    # The newest schedule slot already handed to the workers: claimed atomically, so two schedulers
    # never start the same slot twice, and a scheduler that was down runs only the latest missed slot.
    last_slot = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Policy of {self.group}"

    def parsed_schedule(self):
        from protection.schedule import parse_schedule

        return parse_schedule(self.schedule, self.timezone)


class BackupSlot(models.Model):
    """One of settings.MAX_CONCURRENT_BACKUPS places a backup must hold while it runs.

    Taken with a conditional UPDATE (job IS NULL), so the limit holds across workers and machines.
    """

    number = models.PositiveSmallIntegerField(primary_key=True)
    job = models.UUIDField(null=True, blank=True)

    def __str__(self) -> str:
        return f"backup slot {self.number}"
