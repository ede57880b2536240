"""Restore tests (issue 17): each protected VM's newest point started in an isolated place (by instant
recovery), checked (volumes, power-on and heartbeat, optionally IP, a TCP port and a canary file) and
removed again, on a schedule per protection group. A passed test is the VM's "last proven recoverable"."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models


class RestoreTestPolicy(models.Model):
    """How often a group's VMs must be proven, when tests may run, where test VMs go and what is checked.
    The defaults work on the simulator and are safe in production: test VMs are named with the prefix,
    their NICs disconnected, and removed after the test."""

    group = models.OneToOneField(
        "protection.ProtectionGroup", on_delete=models.CASCADE, related_name="restore_test_policy"
    )
    enabled = models.BooleanField(default=True)
    every_days = models.PositiveSmallIntegerField(default=7, help_text="Each VM is proven at least this often.")
    window_start = models.TimeField(default=dt.time(0, 0), help_text="Tests start from this time (the group's zone)")
    window_hours = models.PositiveSmallIntegerField(default=24, help_text="…for this many hours (24: any time).")
    max_concurrent = models.PositiveSmallIntegerField(default=1, help_text="Tests of this group at once.")
    host = models.ForeignKey(
        "inventory.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Where test VMs run (empty: each VM's own host).",
    )  # fmt: skip
    datastore = models.ForeignKey(
        "inventory.Datastore", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Where a full restore puts test VMs when instant recovery is not possible (empty: the VM's own).",
    )  # fmt: skip
    name_prefix = models.CharField(max_length=20, default="vmb-test-", help_text="Test VMs are named PREFIX + VM.")
    heartbeat_seconds = models.PositiveIntegerField(
        default=600, help_text="How long VMware Tools may take to report running with a heartbeat (seconds)."
    )
    network = models.CharField(
        max_length=255, blank=True,
        help_text="An isolated network to connect the test VM to (empty: every NIC disconnected).",
    )  # fmt: skip
    require_ip = models.BooleanField(default=False, help_text="The guest must report an IP address.")
    tcp_port = models.PositiveIntegerField(
        null=True, blank=True, help_text="A TCP port that must answer on the guest's IP (needs the network)."
    )
    canary_path = models.CharField(
        max_length=1024, blank=True, help_text="A file that must exist in the point, e.g. /var/lib/db/main.db"
    )
    canary_min_bytes = models.BigIntegerField(default=1, help_text="…at least this big.")
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Restore tests of {self.group}"


class RestoreTest(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        PASSED = "passed", "passed"
        FAILED = "failed", "failed"  # a check failed: the point is not proven recoverable
        ERROR = "error", "could not run"  # the test itself could not run (vCenter unreachable, say)

    FINAL = (State.PASSED, State.FAILED, State.ERROR)

    vm = models.ForeignKey("inventory.VirtualMachine", on_delete=models.CASCADE, related_name="restore_tests")
    point = models.ForeignKey("vault.RecoveryPoint", null=True, on_delete=models.SET_NULL, related_name="restore_tests")
    point_created = models.DateTimeField(null=True, help_text="When the tested point was taken")
    group = models.ForeignKey("protection.ProtectionGroup", null=True, blank=True, on_delete=models.SET_NULL)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED, db_index=True)
    method = models.CharField(max_length=16, default="instant", help_text="instant (recovery) or restore (full)")
    # Each check, in order: {"check", "ok", "seconds", "detail"} (and "volumes" for the volume check).
    steps = models.JSONField(default=list)
    failed_check = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    test_vm_name = models.CharField(max_length=80, blank=True)
    instant_recovery = models.ForeignKey(
        "instant.InstantRecovery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    bytes_read = models.BigIntegerField(default=0, help_text="Read from the store by the test")
    queued = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True, db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey("jobs.JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-queued"]
        indexes = [models.Index(fields=["vm", "state", "-finished"])]

    def __str__(self) -> str:
        return f"Restore test of {self.vm} ({self.get_state_display()})"

    @property
    def duration(self) -> dt.timedelta | None:
        return self.finished - self.started if self.finished and self.started else None

    @property
    def failure(self) -> str:
        """Which check failed and why, one sentence."""
        return f"{self.failed_check}: {self.error}" if self.failed_check else self.error
