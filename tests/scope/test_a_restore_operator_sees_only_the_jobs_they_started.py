"""bob (restore operator) sees the jobs he started, with their log and parameters, and never a job
alice or the scheduler started: not in the list (whatever the filter), its page, its polled row, the
API or the Overview. Administrators and auditors see every job."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from jobs.models import JobRun
from jobs.queries import visible_runs
from tests.factories.people import token_client
from tests.scope.conftest import World


def test_the_jobs_page_lists_bobs_jobs_only_whatever_the_filter(world: World, as_helpdesk: Any) -> None:
    for query in ({}, {"status": "running"}, {"status": "active"}, {"status": "succeeded"}, {"kind": "system.check"}):
        listed = {run.pk for run in as_helpdesk.get(reverse("jobs:list"), query).context["page"].object_list}
        assert listed <= {world.jobs["bob"].pk}, query
    body = as_helpdesk.get(reverse("jobs:list")).content.decode()
    assert "BOB-JOB" in body and "ALICE-JOB" not in body and "You see the jobs you started" in body


def test_bob_never_opens_a_job_alice_started(world: World, as_helpdesk: Any) -> None:
    alice_job = world.jobs["alice"]
    for name in ("jobs:detail", "jobs:row"):
        assert as_helpdesk.get(reverse(name, args=[alice_job.pk])).status_code == 404
        assert as_helpdesk.get(reverse(name, args=[alice_job.pk]), headers={"HX-Request": "true"}).status_code == 404
    own = as_helpdesk.get(reverse("jobs:detail", args=[world.jobs["bob"].pk])).content.decode()
    assert "log line of BOB-JOB" in own


def test_the_api_gives_bob_his_jobs_only(world: World, helpdesk: Any) -> None:
    api = token_client(helpdesk)
    assert [j["id"] for j in api.get("/api/v1/jobs/").json()["results"]] == [str(world.jobs["bob"].pk)]
    assert api.get(f"/api/v1/jobs/{world.jobs['alice'].pk}/").status_code == 404
    detail = api.get(f"/api/v1/jobs/{world.jobs['bob'].pk}/").json()
    assert detail["params"] == {"marker": "BOB-JOB file restore"}


def test_the_overview_shows_bob_his_recent_jobs_and_points_only(world: World, as_helpdesk: Any) -> None:
    context = as_helpdesk.get(reverse("dashboard:overview")).context
    assert [run.pk for run in context["recent_jobs"]] == [world.jobs["bob"].pk]
    assert context["my_point_count"] == 3 and context["my_vm_count"] == 3
    assert [r.pk for r in context["recent_restores"]] == [world.restores["bob"].pk]


def test_administrators_and_auditors_see_every_job(world: World, admin: Any, auditor: Any, as_auditor: Any) -> None:
    every = set(JobRun.objects.values_list("pk", flat=True))
    assert set(visible_runs(admin).values_list("pk", flat=True)) == every
    assert set(visible_runs(auditor).values_list("pk", flat=True)) == every
    assert as_auditor.get(reverse("jobs:detail", args=[world.jobs["alice"].pk])).status_code == 200
    assert "You see the jobs you started" not in as_auditor.get(reverse("jobs:list")).content.decode()
