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


# The file catalog (recovery.catalog): every file of every browsable volume of a VM's points, each
# distinct version stored once with the range of the VM's catalogued points that hold it.


class CatalogVm(models.Model):
    """A VM's catalog state; its row is the lock that serialises writers and deletes for the VM."""

    vm = models.OneToOneField(
        "inventory.VirtualMachine", primary_key=True, on_delete=models.CASCADE, related_name="catalog_state"
    )
    last_seq = models.IntegerField(default=0, help_text="The last sequence number given to a point (never reused)")
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"catalog of VM {self.vm_id}"


class CatalogPoint(models.Model):
    """A recovery point as the catalog knows it: its place in the VM's sequence, or why it has none.

    Deleted with its point (cascade); `recovery.catalog.receivers` then narrows or removes the versions
    whose range named it, in the same transaction, so a deleted point's files are never found."""

    class Status(models.TextChoices):
        WRITING = "writing", "Being catalogued"
        CATALOGUED = "catalogued", "Catalogued"
        UNAVAILABLE = "unavailable", "Not catalogued"

    point = models.OneToOneField(
        "vault.RecoveryPoint", primary_key=True, on_delete=models.CASCADE, related_name="catalog"
    )
    vm = models.ForeignKey("inventory.VirtualMachine", on_delete=models.CASCADE, related_name="catalog_points")
    seq = models.IntegerField(null=True, blank=True, help_text="Order among the VM's catalogued points")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WRITING)
    note = models.CharField(max_length=500, blank=True, help_text="Why it is not (fully) catalogued")
    entries = models.IntegerField(default=0, help_text="Files and folders listed")
    new_versions = models.IntegerField(default=0, help_text="Versions this point added")
    catalogued = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vm", "seq"], name="catalog_point_vm_seq")]

    def __str__(self) -> str:
        return f"catalog of point {self.point_id} ({self.status})"


class CatalogVolume(models.Model):
    """A browsable volume of a VM (disk key, volume index), across all its points."""

    vm = models.ForeignKey("inventory.VirtualMachine", on_delete=models.CASCADE, related_name="catalog_volumes")
    disk_key = models.IntegerField()
    volume_index = models.IntegerField()
    label = models.CharField(max_length=255, blank=True)
    fs_type = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["vm", "disk_key", "volume_index"], name="catalog_volume_key"),
        ]

    def __str__(self) -> str:
        return f"{self.label or 'volume'} ({self.disk_key}:{self.volume_index}) of VM {self.vm_id}"


class CatalogPath(models.Model):
    """A path on a VM's volume, stored once whatever its versions: what search matches.

    Search indexes on PostgreSQL (lower(name) with text_pattern_ops for prefixes, pg_trgm GIN on
    lower(name) and lower(path) for globs and fragments) are made by migration 0006, not declared here,
    because SQLite has neither. A changed file adds a version, never a path, so those costly indexes
    grow only with new names."""

    id = models.BigAutoField(primary_key=True)
    volume = models.ForeignKey(CatalogVolume, on_delete=models.CASCADE, related_name="paths")
    path = models.TextField()
    name = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["volume", "path"], name="catalog_path_key")]

    def __str__(self) -> str:
        return self.path


class CatalogVersion(models.Model):
    """One version of a file or folder: held by the VM's catalogued points whose sequence number lies in
    [first_seq, last_seq] (last_seq NULL: still current at the VM's newest catalogued point)."""

    id = models.BigAutoField(primary_key=True)
    # No database constraint: its check per inserted row was a third of the cost of writing a changed
    # point. Versions go with their path through the ORM's cascade, and with their point through
    # recovery.catalog.receivers; nothing else writes them.
    path = models.ForeignKey(CatalogPath, on_delete=models.CASCADE, related_name="versions", db_constraint=False)
    # The path's volume again, so a volume's current versions are one partial-index scan (joining
    # through the paths made PostgreSQL read every version of every VM).
    volume = models.ForeignKey(
        CatalogVolume, on_delete=models.CASCADE, related_name="versions", db_constraint=False, db_index=False
    )
    is_dir = models.BooleanField(default=False)
    size = models.BigIntegerField(default=0)
    modified = models.DateTimeField(null=True, blank=True)
    owner = models.CharField(max_length=200, blank=True)
    first_seq = models.IntegerField()
    last_seq = models.IntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["volume"], condition=models.Q(last_seq__isnull=True), name="catalog_version_current")
        ]

    def __str__(self) -> str:
        return f"version {self.pk} of path {self.path_id} [{self.first_seq}..{self.last_seq or ''}]"


class FolderIndex(models.Model):
    """A chunk of the sorted listing of a large folder of a point, written while the point is catalogued
    (recovery.folder_index), so a page of a folder of 100,000 files reads one chunk of names and the
    page's own nodes instead of every name in the folder. Goes with its point."""

    id = models.BigAutoField(primary_key=True)
    point = models.ForeignKey("vault.RecoveryPoint", on_delete=models.CASCADE, related_name="+")
    disk_key = models.IntegerField()
    volume_index = models.IntegerField()
    # SHA-256 of the folder's escaped path: a deep path would not fit a unique index.
    path_key = models.CharField(max_length=64)
    first = models.IntegerField(help_text="Position of the chunk's first entry in the folder's listing")
    total = models.IntegerField(help_text="Entries in the whole folder")
    entries = models.BinaryField(help_text="zstd of lines 'd|f<file id>\\t<escaped name>', in listing order")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["point", "disk_key", "volume_index", "path_key", "first"], name="folder_index_chunk"
            )
        ]

    def __str__(self) -> str:
        return f"folder index chunk {self.first} of point {self.point_id}"
