"""Cancelling a job goes back to the page the form names in `next`, but only a page of this site: any
other address (another host, a scheme-relative or javascript: URL) falls back to the job's own page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobs.models import JobRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def run() -> JobRun:
    return JobRun.objects.create(kind="system.check", title="System check", queue="maintenance", status="succeeded")


def cancel(client, run: JobRun, next_url: str) -> str:
    response = client.post(reverse("jobs:cancel", args=[run.pk]), {"next": next_url})
    assert response.status_code == 302
    return response["Location"]


def test_a_local_next_page_is_followed(as_admin, run):
    assert cancel(as_admin, run, "/jobs/?status=running") == "/jobs/?status=running"


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example/jobs/",
        "//evil.example/jobs/",
        "/\\evil.example/",
        "javascript:alert(1)",
        "http://testserver/jobs/",  # this host, but over HTTP while the request is HTTPS
    ],
)
def test_any_other_address_falls_back_to_the_job_page(as_admin, run, elsewhere):
    location = as_admin.post(reverse("jobs:cancel", args=[run.pk]), {"next": elsewhere}, secure=True)["Location"]
    assert location == reverse("jobs:detail", args=[run.pk])


def test_no_next_goes_to_the_job_page(as_admin, run):
    assert cancel(as_admin, run, "") == reverse("jobs:detail", args=[run.pk])
