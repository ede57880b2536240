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


class BackupClaim(models.Model):
    """A VM's claim (protection/claims.py): the one job (a backup, or a restore writing over the VM's
    disks) working on the VM now. The row is made the first time the VM is claimed and kept after;
    `run_id` is the holder's JobRun id, NULL while the VM is free.

    Taken with a conditional UPDATE (run_id IS NULL), so two workers never both hold it.
    """

    vm = models.OneToOneField(
        "inventory.VirtualMachine", primary_key=True, on_delete=models.CASCADE, related_name="backup_claim"
    )
    run_id = models.UUIDField(null=True, blank=True)

    def __str__(self) -> str:
        return f"claim on VM {self.vm_id}"


class SnapshotCleanup(models.Model):
    """The newest outcome of the snapshot cleanup (protection.jobs.cleanup_snapshots) on a VM where it
    had something to report: leftovers of ours it removed, or an error checking or removing them.

    Written in the transaction of the cleanup's audit row; alerts/conditions.py reads it to open the
    "leftover snapshots" alert, which a later successful cleanup of the VM's vCenter closes.
    """

    class Outcome(models.TextChoices):
        REMOVED = "removed", "Leftover snapshots removed"
        NOT_REMOVED = "not_removed", "Leftover snapshots not checked or not removed"

    vm = models.OneToOneField(
        "inventory.VirtualMachine", primary_key=True, on_delete=models.CASCADE, related_name="snapshot_cleanup"
    )
    job = models.UUIDField(help_text="The cleanup run that wrote this outcome.")
    checked_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    removed = models.PositiveIntegerField(default=0, help_text="How many leftover snapshots were removed.")
    error = models.TextField(blank=True, help_text="Why they could not be checked or removed.")

    def __str__(self) -> str:
        return f"snapshot cleanup of VM {self.vm_id}: {self.outcome}"
