from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobRun(models.Model):
    """One run of a background job. Created before enqueueing; its UUID is the RQ job id.

    Pages read this row, never RQ's own data, so a job's history survives Redis restarts.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # an expected condition, with a clear message (VM gone, datastore full)
        ERRORED = "errored"  # an unexpected exception; the traceback is kept
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.ERRORED, Status.CANCELLED)
    ACTIVE = (Status.QUEUED, Status.RUNNING)
    MAX_LOG_LINES = 2000

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64, db_index=True)
    title = models.CharField(max_length=200)
    queue = models.CharField(max_length=32, default="default")
    # What the job works on, as text so the row outlives the object.
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    # Primary keys and plain values only: a job re-reads everything it needs.
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    worker = models.CharField(max_length=200, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_unit = models.CharField(max_length=16, default="steps")
    rate = models.FloatField(null=True, blank=True, help_text="units per second")
    cancel_requested = models.BooleanField(default=False)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    # The job this one waits for (a parallelism chain). Kept on the row, not only in Redis, so a job
    # queued again after Redis lost it still waits for its predecessor while that one has not ended.
    after = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="waiting")
    # How often the job was put on its queue (first time, then each time the reaper found its entry
    # lost or the previous attempt failed), and the last error met doing so ("" once queued).
    queue_attempts = models.PositiveSmallIntegerField(default=0)
    queue_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        permissions = [
            ("cancel_jobrun", "Can cancel jobs"),
            # Without it a user sees only the jobs they started; a view_ codename, so auditors hold it.
            ("view_all_jobruns", "Can see every job, whoever started it"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def percent(self) -> int | None:
        if not self.progress_total:
            return 100 if self.status == self.Status.SUCCEEDED else None
        return max(0, min(100, int(self.progress_done * 100 / self.progress_total)))

    @property
    def eta(self) -> timedelta | None:
        if self.is_final or not self.rate or not self.progress_total:
            return None
        remaining = max(0, self.progress_total - self.progress_done)
        return timedelta(seconds=round(remaining / self.rate))

    @property
    def duration(self) -> timedelta | None:
        if not self.started:
            return None
        return (self.finished or timezone.now()) - self.started
