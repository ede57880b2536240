"""Recovery points and where they are stored.

A row is created only after the store has published the point (every chunk and index durable), so a
row always names a complete, restorable point. Its UUID is the point's id in the store.
"""

from __future__ import annotations

import uuid

from django.db import models


class RecoveryPoint(models.Model):
    class Consistency(models.TextChoices):
        APPLICATION = "application", "Application-consistent"
        CRASH = "crash", "Crash-consistent"

    class VaultStatus(models.TextChoices):
        NOT_REPLICATED = "none", "Not replicated"
        PENDING = "pending", "Vault pending"
        REPLICATED = "replicated", "In vault"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    vm = models.ForeignKey("inventory.VirtualMachine", on_delete=models.PROTECT, related_name="recovery_points")
    group = models.ForeignKey("protection.ProtectionGroup", null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey("jobs.JobRun", null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(help_text="When the snapshot was taken: the point in time restored")
    completed = models.DateTimeField()
    consistency = models.CharField(max_length=16, choices=Consistency.choices)
    consistency_note = models.CharField(max_length=500, blank=True, help_text="Why it is not what the policy asked")
    logical_bytes = models.BigIntegerField(default=0, help_text="Sum of the disks' sizes")
    new_bytes = models.BigIntegerField(default=0, help_text="Bytes this point added to the store (compressed)")
    read_bytes = models.BigIntegerField(default=0, help_text="Bytes read from vCenter")
    duration_seconds = models.FloatField(default=0)
    config = models.JSONField(default=dict, help_text="The VM's configuration, enough to recreate it")
    local = models.BooleanField(default=True, help_text="Present in the local store")
    vault_status = models.CharField(max_length=12, choices=VaultStatus.choices, default=VaultStatus.NOT_REPLICATED)
    vault_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    damaged = models.BooleanField(default=False)
    damage = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["vm", "-created"], name="point_vm_created")]

    def __str__(self) -> str:
        return f"{self.vm.name} @ {self.created:%Y-%m-%d %H:%M}"


class RecoveryPointDisk(models.Model):
    point = models.ForeignKey(RecoveryPoint, on_delete=models.CASCADE, related_name="disks")
    key = models.IntegerField()
    label = models.CharField(max_length=100)
    capacity_bytes = models.BigIntegerField()
    file_name = models.CharField(max_length=1000)
    # Which read path was used and why: "cbt" (only changed areas read) or "full" (all read, dedup skips).
    read_path = models.CharField(max_length=8)
    read_reason = models.CharField(max_length=300)
    change_id = models.CharField(max_length=200, blank=True, help_text="CBT change id at the snapshot")
    bytes_read = models.BigIntegerField(default=0)
    new_bytes = models.BigIntegerField(default=0)
    chunks = models.IntegerField(default=0)
    new_chunks = models.IntegerField(default=0)
    zero_chunks = models.IntegerField(default=0)

    class Meta:
        ordering = ["point", "key"]
        constraints = [models.UniqueConstraint(fields=["point", "key"], name="point_disk_key")]

    def __str__(self) -> str:
        return f"{self.label} of {self.point}"
