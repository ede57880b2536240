"""Jobs (filters, progress, log) and starting backups through the API: JobRuns and an audit row,
exactly as the "Back up now" buttons make them."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import JobRun
from protection.scheduling import BACKUP_KIND

pytestmark = pytest.mark.django_db


def post_backup(client, body):
    return client.post("/api/v1/backups/", body, content_type="application/json")


def test_backing_up_a_group_queues_a_job_per_vm_and_is_audited(api_admin, admin, inventory):
    group = inventory["group"]
    response = post_backup(api_admin, {"group": group.pk})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["detail"] == "3 backup jobs queued."
    runs = JobRun.objects.filter(kind=BACKUP_KIND)
    assert sorted(j["id"] for j in body["jobs"]) == sorted(str(r.pk) for r in runs)
    assert {r.target_label for r in runs} == {"web-01", "web-02", "db-01"}
    assert all(r.created_by == admin and r.status == "queued" for r in runs)
    entry = AuditEntry.objects.get(action="protection.backup_now")
    assert entry.actor == admin and entry.target_label == "Prod" and entry.details == {"jobs": 3}
    # Asking again while they are queued starts nothing new.
    again = post_backup(api_admin, {"group": group.pk})
    assert again.status_code == 202 and again.json()["jobs"] == []
    assert "already queued or running" in again.json()["detail"]


def test_backing_up_one_vm(api_admin, inventory):
    vm = inventory["vms"]["web-01"]
    body = post_backup(api_admin, {"vm": vm.pk}).json()
    [job] = body["jobs"]
    assert job["target_label"] == "web-01" and job["kind"] == BACKUP_KIND and job["status"] == "queued"
    assert AuditEntry.objects.get(action="protection.backup_now").target_id == str(vm.pk)


def test_backup_requests_are_validated(api_admin, inventory):
    assert post_backup(api_admin, {}).json() == {"non_field_errors": ["Give either vm or group."]}
    both = {"vm": inventory["vms"]["web-01"].pk, "group": inventory["group"].pk}
    assert post_backup(api_admin, both).status_code == 400
    response = post_backup(api_admin, {"vm": 999999})
    assert response.status_code == 400 and "vm" in response.json()
    # A VM outside every group: refused with the page's message, and nothing queued or audited.
    response = post_backup(api_admin, {"vm": inventory["vms"]["dev-01"].pk})
    assert response.status_code == 409 and "not in a protection group" in response.json()["detail"]
    assert not JobRun.objects.exists() and not AuditEntry.objects.filter(action="protection.backup_now").exists()
    assert api_admin.post("/api/v1/backups/", "[1]", content_type="application/json").status_code == 400
    assert api_admin.post("/api/v1/backups/", "{", content_type="application/json").status_code == 400
    assert api_admin.get("/api/v1/backups/").status_code == 405


def test_jobs_are_listed_newest_first_with_filters_and_progress(api_auditor, admin):
    now = timezone.now()
    done = JobRun.objects.create(
        kind="system.check", title="System check", status="succeeded", created=now, progress_done=3, progress_total=3
    )
    JobRun.objects.create(kind=BACKUP_KIND, title="Backup of web-01", status="failed", created=now, created_by=admin)
    running = JobRun.objects.create(
        kind=BACKUP_KIND,
        title="Backup of web-02",
        status="running",
        created=now + timezone.timedelta(seconds=1),
        started=now,
        progress_done=25,
        progress_total=100,
        progress_unit="bytes",
        rate=5.0,
    )
    body = api_auditor.get("/api/v1/jobs/").json()
    assert body["count"] == 3 and body["results"][0]["id"] == str(running.pk)
    assert body["results"][0]["progress"] == {
        "done": 25,
        "total": 100,
        "unit": "bytes",
        "percent": 25,
        "rate": 5.0,
        "eta_seconds": 15,
    }
    assert "log" not in body["results"][0]
    filtered = api_auditor.get("/api/v1/jobs/", {"status": "failed", "kind": BACKUP_KIND}).json()["results"]
    assert [(j["title"], j["created_by"]) for j in filtered] == [("Backup of web-01", "alice")]
    assert [j["id"] for j in api_auditor.get("/api/v1/jobs/", {"kind": "system.check"}).json()["results"]] == [
        str(done.pk)
    ]
    assert api_auditor.get("/api/v1/jobs/", {"status": "lost"}).status_code == 400


def test_a_job_comes_with_its_log_and_the_traceback_only_for_those_who_may_cancel(api_admin, api_auditor):
    run = JobRun.objects.create(
        kind="test.crash",
        title="Crash",
        status="errored",
        error="ZeroDivisionError",
        traceback="Traceback (most recent call last): ...",
        log=[{"t": "2026-01-01T00:00:00+00:00", "level": "info", "msg": "starting"}],
    )
    body = api_auditor.get(f"/api/v1/jobs/{run.pk}/").json()
    assert body["log"] == [{"t": "2026-01-01T00:00:00+00:00", "level": "info", "msg": "starting"}]
    assert body["status"] == "errored" and body["is_final"] and body["error"] == "ZeroDivisionError"
    assert body["traceback"] is None
    assert api_admin.get(f"/api/v1/jobs/{run.pk}/").json()["traceback"].startswith("Traceback")
    assert api_admin.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api_admin.get("/api/v1/jobs/not-a-uuid/").status_code == 404
