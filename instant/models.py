"""Instant VM recoveries: a VM run straight from a recovery point served over NFS (issue 16)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class InstantRecovery(models.Model):
    """One VM started from a point. The job (instant.jobs) does the vCenter side; the supervisor
    (instant.supervisor) owns the data path: the FUSE server of the point and its NFS export, kept
    while the state needs them and torn down (mount, export, overlay) once it does not."""

    class State(models.TextChoices):
        QUEUED = "queued", "queued"  # checked by the job before anything is mounted
        STARTING = "starting", "starting"
        RUNNING = "running", "running from backup"
        MIGRATING = "migrating", "migrating"
        FINISHED = "finished", "finished"
        FAILED = "failed", "failed"
        STOPPING = "stopping", "stopping"
        STOPPED = "stopped", "stopped"

    # The states in which the supervisor serves the point and exports it.
    SERVED = (State.STARTING, State.RUNNING, State.MIGRATING, State.STOPPING)
    FINAL = (State.FINISHED, State.FAILED, State.STOPPED)

    # Not PROTECT: a finished recovery's row must not keep its point from retention for ever (vault
    # refuses to delete a point a PROTECT reference holds). While one is active, `pin` holds the point.
    point = models.ForeignKey(
        "vault.RecoveryPoint", null=True, on_delete=models.SET_NULL, related_name="instant_recoveries"
    )
    point_created = models.DateTimeField(null=True, help_text="When the point was taken (kept once it is deleted)")
    vm_name = models.CharField(max_length=80, help_text="The new VM's name")
    source_vm = models.ForeignKey("inventory.VirtualMachine", null=True, on_delete=models.SET_NULL, related_name="+")
    host_moref = models.CharField(max_length=255)
    host_name = models.CharField(max_length=255)
    folder_moref = models.CharField(max_length=255)
    pool_moref = models.CharField(max_length=255)
    connect_network = models.BooleanField(default=False)
    # Connect the NICs to this network instead of their own (a restore test's isolated network).
    network_name = models.CharField(max_length=255, blank=True)
    # The original VM was gone from vCenter when this was requested: the VM comes back as itself (its
    # name by default, its instance and BIOS UUIDs) instead of as a copy, unless vCenter has it again.
    keep_identity = models.BooleanField(default=False)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    datastore_name = models.CharField(max_length=80, unique=True, blank=True, null=True)
    datastore_moref = models.CharField(max_length=255, blank=True)
    vm_moref = models.CharField(max_length=255, blank=True, help_text="The registered VM")
    target_datastore = models.CharField(max_length=255, blank=True, help_text="Where migrate moved the disks")
    started = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    bytes_read = models.BigIntegerField(default=0, help_text="Read from the store (status.json)")
    overlay_bytes = models.BigIntegerField(default=0, help_text="Written by the VM (status.json)")
    # Faults of the data path, for the page and the alerts: the last restart of the point's server or of
    # ganesha (each one a few seconds of I/O the guest waited for), and the overlay's file system.
    restarts = models.IntegerField(default=0, help_text="Times the data path was restarted after dying")
    last_restart = models.DateTimeField(null=True, blank=True)
    restart_reason = models.CharField(max_length=500, blank=True)
    overlay_free_bytes = models.BigIntegerField(null=True, blank=True, help_text="Free on the overlay's file system")
    write_error = models.CharField(max_length=500, blank=True, help_text="Why the VM's writes fail now, if they do")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey("jobs.JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Holds the point against delete, retention and GC from the start until a final state (vault.pins).
    pin = models.ForeignKey("vault.PointPin", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The supervisor's serve process: pid and kernel start time (/proc/PID/stat), so a pid reused by
    # another process is never taken for it; export_id is set once ganesha exports the mount.
    serve_pid = models.IntegerField(null=True, blank=True)
    serve_start_ticks = models.BigIntegerField(null=True, blank=True)
    export_id = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started"]
        verbose_name_plural = "instant recoveries"

    def __str__(self) -> str:
        return f"{self.vm_name} ({self.get_state_display()})"

    @property
    def directory(self) -> Path:
        return Path(settings.INSTANT_DIR) / str(self.pk)

    @property
    def export_path(self) -> Path:
        """The FUSE mount: exported by ganesha at this path, the NAS datastore's remote path."""
        return self.directory / "mount"

    @property
    def overlay_dir(self) -> Path:
        return self.directory / "overlay"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL
