"""Which job runs a user may see. Pages and the API ask here, never decide themselves."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobs.models import JobRun

# Administrators and auditors hold it; restore operators see only the jobs they started.
SEE_ALL_JOBS = "jobs.view_all_jobruns"


def sees_every_job(user: Any) -> bool:
    return bool(user.has_perm(SEE_ALL_JOBS))


def visible_runs(user: Any) -> QuerySet[JobRun]:
    """Every run for those who see every job; otherwise the runs `user` started (none for the
    scheduler's and the system's own jobs, whose `created_by` is empty)."""
    runs = JobRun.objects.all()
    if sees_every_job(user):
        return runs
    return runs.filter(created_by_id=user.pk) if user.has_perm("jobs.view_jobrun") else runs.none()
