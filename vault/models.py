"""Recovery points and where they are stored.

A row is created only after the store has published the point (every chunk and index durable), so a
row always names a complete, restorable point. Its UUID is the point's id in the store.
"""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from lib.crypto import EncryptedText

MIN_GC_GRACE_HOURS = 1
LOCAL_TIER = "local"
VAULT_TIER = "vault"


def held_in(tier: str) -> models.Q:
    """The points a tier holds: in the local store, or whole in the vault. One definition, for
    filters and for aggregates (`Count("pk", filter=held_in(VAULT_TIER))`)."""
    if tier == LOCAL_TIER:
        return models.Q(local=True)
    if tier == VAULT_TIER:
        return models.Q(vault_status=RecoveryPoint.VaultStatus.REPLICATED)
    raise ValueError(f"no tier {tier!r}: {LOCAL_TIER!r} or {VAULT_TIER!r}")


class RecoveryPointQuerySet(models.QuerySet):
    def in_tier(self, tier: str) -> RecoveryPointQuerySet:
        return self.filter(held_in(tier))


class RecoveryPoint(models.Model):
    class Consistency(models.TextChoices):
        APPLICATION = "application", "Application-consistent"
        CRASH = "crash", "Crash-consistent"

    class VaultStatus(models.TextChoices):
        NOT_REPLICATED = "none", "Not replicated"
        PENDING = "pending", "Vault pending"
        REPLICATED = "replicated", "In vault"
        # Removed from the vault by retention (or by hand): never queued for replication again.
        PRUNED = "pruned", "Pruned from the vault"

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
    # Written by restore_tests (a layer above): the newest restore test of this point that passed or
    # failed, when it finished and how long it took, or which check failed and why.
    restore_test = models.CharField(max_length=8, blank=True, help_text="passed, failed, or '' (not tested)")
    restore_tested_at = models.DateTimeField(null=True, blank=True)
    restore_test_note = models.CharField(max_length=500, blank=True)
    local = models.BooleanField(default=True, help_text="Present in the local store")
    vault_status = models.CharField(max_length=12, choices=VaultStatus.choices, default=VaultStatus.NOT_REPLICATED)
    vault_at = models.DateTimeField(null=True, blank=True)
    vault_bytes = models.BigIntegerField(default=0, help_text="Bytes this point's replication uploaded")
    vault_tier = models.CharField(max_length=10, blank=True, help_text="Coolest access tier its chunks were moved to")
    vault_verified_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    damaged = models.BooleanField(default=False)
    damage = models.JSONField(default=list, blank=True)
    damaged_at = models.DateTimeField(null=True, blank=True, help_text="When damage was last found")
    # [{"digest": hex, "tier": "local" | "vault"}]: what a repair must bring back for the point to be whole.
    damaged_chunks = models.JSONField(default=list, blank=True)
    repaired_at = models.DateTimeField(null=True, blank=True, help_text="When the damage found was repaired")
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="Retention lock: no path (page, command, job) deletes the point before then"
    )
    # The archive state of the point's vault chunks, cached so that no page view lists the vault
    # (vault.archive): counted by the tiering job and the rehydrate action, checked again on a sample.
    archived_chunks = models.IntegerField(
        null=True, default=0, help_text="Vault chunks in the Archive tier when last counted; empty: some, not counted"
    )
    archived_bytes = models.BigIntegerField(default=0)
    rehydrating_chunks = models.IntegerField(default=0)
    archive_sample = models.JSONField(default=list, blank=True, help_text="A few archived blob names, checked cheaply")
    archive_checked_at = models.DateTimeField(null=True, blank=True)
    rehydration_priority = models.CharField(max_length=8, blank=True)
    rehydration_requested_at = models.DateTimeField(null=True, blank=True)

    objects = RecoveryPointQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["vm", "-created"], name="point_vm_created")]

    def __str__(self) -> str:
        return f"{self.vm.name} @ {self.created:%Y-%m-%d %H:%M}"

    def is_locked(self, now) -> bool:
        return self.locked_until is not None and self.locked_until > now


class PointPin(models.Model):
    """A recovery point in use (an instant recovery running from it). While a pin exists no path deletes
    the point from any tier (page, command, API, retention, reconcile: the FK is PROTECT as a last
    guard), so its chunks stay referenced and GC keeps them, and tiering leaves its chunks where they
    are. Made and removed by `vault.pins`; several pins may hold one point."""

    point = models.ForeignKey(RecoveryPoint, on_delete=models.PROTECT, related_name="pins")
    reason = models.CharField(max_length=200, help_text='What uses the point, e.g. "instant recovery 12"')
    created = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, help_text="Who or what pinned it")

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"{self.point_id} pinned by {self.reason}"


def pinned_by(point_id: uuid.UUID) -> str | None:
    """What pins the point ("instant recovery 12", "instant recovery 12 and instant recovery 13"), or None."""
    reasons = list(dict.fromkeys(PointPin.objects.filter(point_id=point_id).values_list("reason", flat=True)))
    if not reasons:
        return None
    return reasons[0] if len(reasons) == 1 else ", ".join(reasons[:-1]) + " and " + reasons[-1]


def pin_refusal(point_id: uuid.UUID) -> str | None:
    """The one sentence that refuses removing a pinned point, or None when nothing pins it."""
    users = pinned_by(point_id)
    return None if users is None else f"This recovery point is in use by {users}; stop or finish it first."


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


class VaultSettings(models.Model):
    """Where long-term copies go, and how. One row (pk 1); secrets are stored encrypted and never
    rendered back. Kind "none" keeps everything on this server's disk only."""

    class Kind(models.TextChoices):
        NONE = "none", "No vault (local store only)"
        DIRECTORY = "directory", "Directory (a mounted share or second disk)"
        AZURE = "azure", "Azure Blob Storage"

    class Auth(models.TextChoices):
        CONNECTION_STRING = "connection_string", "Connection string"
        SAS = "sas", "Account URL + SAS token"
        KEY = "key", "Account URL + account key"
        DEFAULT_CREDENTIAL = "default_credential", "Account URL + Microsoft Entra ID (DefaultAzureCredential)"

    class Tier(models.TextChoices):
        COOL = "Cool", "Cool"
        COLD = "Cold", "Cold"
        ARCHIVE = "Archive", "Archive (hours to rehydrate before a restore)"

    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.NONE)
    directory = models.CharField(max_length=1000, blank=True)
    account_url = models.URLField(blank=True, help_text="https://ACCOUNT.blob.core.windows.net")
    container = models.CharField(max_length=63, default="vmbackup")
    auth = models.CharField(max_length=20, choices=Auth.choices, default=Auth.CONNECTION_STRING)
    secret_encrypted = models.TextField(blank=True, editable=False)
    encryption_key_encrypted = models.TextField(blank=True, editable=False)
    key_fingerprint = models.CharField(max_length=16, blank=True, editable=False)
    upload_threads = models.PositiveSmallIntegerField(default=4)
    bandwidth_mb_per_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per replication job; empty for no limit"
    )
    tier_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.COOL)
    # At least an hour: a chunk a backup has just decided to reuse must never be swept under it.
    gc_grace_hours = models.PositiveSmallIntegerField(default=24, validators=[MinValueValidator(MIN_GC_GRACE_HOURS)])
    usage = models.JSONField(default=dict, blank=True, editable=False, help_text="Bytes per tier, last measured")
    rs_subscription_id = models.CharField("Subscription ID", max_length=36, blank=True)
    rs_resource_group = models.CharField("Resource group", max_length=90, blank=True)
    rs_vault_name = models.CharField("Recovery Services vault", max_length=50, blank=True)
    updated = models.DateTimeField(auto_now=True)

    secret = EncryptedText("secret_encrypted")  # connection string, SAS token or account key
    encryption_key = EncryptedText("encryption_key_encrypted")

    class Meta:
        verbose_name = "vault settings"
        verbose_name_plural = "vault settings"

    def __str__(self) -> str:
        return self.get_kind_display()

    @classmethod
    def current(cls) -> VaultSettings:
        return cls.objects.get_or_create(pk=1)[0]

    @property
    def enabled(self) -> bool:
        return self.kind != self.Kind.NONE

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption_key_encrypted)

    @property
    def recovery_services_configured(self) -> bool:
        return bool(self.rs_subscription_id and self.rs_resource_group and self.rs_vault_name)


class StorageSample(models.Model):
    """Storage used on one day (updated hourly), for the overview's 30-day growth chart."""

    day = models.DateField(unique=True)
    local_bytes = models.BigIntegerField(help_text="Bytes the local store takes on disk")
    vault_bytes = models.BigIntegerField(help_text="Bytes in the vault, as last measured or uploaded")
    logical_bytes = models.BigIntegerField(help_text="What the local points would take as plain images")
    points = models.IntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day}: {self.local_bytes} local, {self.vault_bytes} vault"
