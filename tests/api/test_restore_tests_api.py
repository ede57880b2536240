"""/api/v1/restore-tests/ and /api/v1/restore-test-policies/{group id}/: administrators list, open and
queue restore tests (VM by id or name, a point optional: an audited action answering 202 with the
queued job) and change a group's policy (audited); auditors read and are refused acting; restore
operators (helpdesk) are refused; a read-only token may not start one; mistakes are a 400 or 409 that
says why. The job itself is tests/restore_tests/'s: here it is only queued."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import create_token
from audit.models import AuditEntry
from inventory.models import Host
from jobs.models import JobRun
from restore_tests.actions import RUN_KIND
from restore_tests.models import RestoreTest, RestoreTestPolicy
from tests.api.conftest import plain_point

pytestmark = pytest.mark.django_db
URL = "/api/v1/restore-tests/"


@pytest.fixture
def lab(inventory: dict[str, Any]) -> dict[str, Any]:
    """web-01 with two points, web-02 with one (group Prod)."""
    vms, group, now = inventory["vms"], inventory["group"], timezone.now()
    return {
        "vms": vms,
        "group": group,
        "old": plain_point(vms["web-01"], group, now - timedelta(days=2)),
        "new": plain_point(vms["web-01"], group, now - timedelta(hours=1)),
        "web-02": plain_point(vms["web-02"], group, now - timedelta(hours=2)),
    }


def send(client: Any, url: str, body: Any, method: str = "post") -> Any:
    return getattr(client, method)(url, json.dumps(body), "application/json")


def finished(lab: dict[str, Any], vm: str, point: str, state: str, hours_ago: float, **fields: Any) -> RestoreTest:
    started = timezone.now() - timedelta(hours=hours_ago)
    test = RestoreTest.objects.create(
        vm=lab["vms"][vm], point=lab[point], point_created=lab[point].created, group=lab["group"], state=state,
        started=started, finished=started + timedelta(seconds=30), **fields,
    )  # fmt: skip
    RestoreTest.objects.filter(pk=test.pk).update(queued=started)
    return test


def test_an_administrator_queues_a_test_by_vm_name_and_gets_the_job(api_admin, lab):
    response = send(api_admin, URL, {"vm": "web-01"})

    assert response.status_code == 202, response.content
    answer = response.json()
    run = JobRun.objects.get(kind=RUN_KIND)
    test = RestoreTest.objects.get()
    assert answer["job"]["id"] == str(run.pk) and run.status == JobRun.Status.QUEUED
    assert answer["detail"] == f"{run.title}: queued."
    assert answer["restore_test"]["id"] == test.pk and answer["restore_test"]["state"] == "queued"
    assert test.point == lab["new"] and test.requested_by is not None and test.requested_by.username == "alice"
    entry = AuditEntry.objects.get(action="restore_test.start")
    assert entry.actor_name == "alice" and entry.details["restore_test"] == test.pk


def test_the_vm_may_be_given_by_id_with_a_point_of_its_own(api_admin, lab):
    response = send(api_admin, URL, {"vm": lab["vms"]["web-01"].pk, "point": str(lab["old"].pk)})

    assert response.status_code == 202, response.content
    assert RestoreTest.objects.get().point == lab["old"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"vm": "nope"}, {"vm": ["'nope' names no VM."]}),
        ({"vm": 999999}, {"vm": ["999999 names no VM."]}),
        ({"vm": True}, {"vm": ["Give a VM id or name."]}),
        ({}, {"vm": ["This field is required."]}),
        (
            {"vm": "web-02", "point": "00000000-0000-0000-0000-000000000000"},
            {"point": ["No such recovery point of web-02."]},
        ),
    ],
)
def test_an_unknown_vm_or_point_is_a_400_that_says_why_and_queues_nothing(api_admin, lab, body, errors):
    response = send(api_admin, URL, body)

    assert response.status_code == 400
    assert response.json() == errors
    assert not RestoreTest.objects.exists() and not JobRun.objects.exists()


def test_a_refused_test_is_a_409_with_one_sentence(api_admin, lab):
    assert send(api_admin, URL, {"vm": "web-01"}).status_code == 202

    again = send(api_admin, URL, {"vm": "web-01"})
    pointless = send(api_admin, URL, {"vm": "db-01"})

    assert again.status_code == 409 and again.json() == {
        "detail": "A restore test of web-01 is queued or running already."
    }
    assert pointless.status_code == 409
    assert pointless.json() == {"detail": "db-01 has no recovery point that can be tested."}
    assert RestoreTest.objects.count() == 1


def test_list_is_newest_first_filters_by_vm_and_state_and_detail_has_the_steps(api_auditor, lab):
    steps = [
        {"check": "volumes", "ok": True, "seconds": 1.5, "detail": "2 volumes listed", "volumes": [{"disk": 2000}]},
        {"check": "heartbeat", "ok": False, "seconds": 600.0, "detail": "no heartbeat"},
    ]
    passed = finished(lab, "web-01", "old", "passed", 5)
    failed = finished(lab, "web-02", "web-02", "failed", 1, steps=steps, failed_check="heartbeat", error="no heartbeat")

    listed = api_auditor.get(URL).json()
    by_vm = api_auditor.get(f"{URL}?vm={lab['vms']['web-01'].pk}").json()
    by_state = api_auditor.get(f"{URL}?state=failed").json()
    detail = api_auditor.get(f"{URL}{failed.pk}/").json()

    assert [r["id"] for r in listed["results"]] == [failed.pk, passed.pk]
    assert [r["id"] for r in by_vm["results"]] == [passed.pk]
    assert [r["id"] for r in by_state["results"]] == [failed.pk]
    assert listed["results"][1]["duration_seconds"] == 30.0 and "steps" not in listed["results"][0]
    assert detail["vm"] == {"id": lab["vms"]["web-02"].pk, "name": "web-02"}
    assert detail["point"] == str(lab["web-02"].pk) and detail["group"]["name"] == "Prod"
    assert (detail["state"], detail["failed_check"], detail["error"]) == ("failed", "heartbeat", "no heartbeat")
    assert detail["steps"] == steps
    assert api_auditor.get(f"{URL}999999/").status_code == 404
    assert api_auditor.get(f"{URL}?state=sleeping").status_code == 400


def test_a_groups_policy_reads_as_the_defaults_until_an_administrator_changes_it(api_admin, api_auditor, lab):
    url = f"/api/v1/restore-test-policies/{lab['group'].pk}/"
    host = Host.objects.create(
        vcenter=lab["vms"]["web-01"].vcenter, datacenter=lab["vms"]["web-01"].datacenter, moref="host-9", name="esx9"
    )

    before = api_auditor.get(url).json()
    changed = send(
        api_admin,
        url,
        {"every_days": 3, "host": host.pk, "canary_path": "/etc/hostname", "window_start": "22:00"},
        "put",
    )
    after = api_auditor.get(url).json()

    assert before["saved"] is False and before["every_days"] == 7 and before["group"] == lab["group"].pk
    assert before["window_start"] == "00:00" and before["updated"] is None
    assert changed.status_code == 200, changed.content
    assert after == changed.json()
    assert after["saved"] is True and (after["every_days"], after["host"]) == (3, host.pk)
    assert after["window_start"] == "22:00" and after["canary_path"] == "/etc/hostname"
    assert after["heartbeat_seconds"] == 600  # the rest unchanged
    policy = RestoreTestPolicy.objects.get(group=lab["group"])
    assert policy.every_days == 3 and policy.host == host
    entry = AuditEntry.objects.get(action="restore_test.policy")
    assert entry.actor_name == "alice" and entry.details["every_days"] == "3"
    assert api_auditor.get("/api/v1/restore-test-policies/999999/").status_code == 404


def test_a_bad_policy_value_is_a_400_naming_the_field_and_changes_nothing(api_admin, lab):
    url = f"/api/v1/restore-test-policies/{lab['group'].pk}/"

    response = send(api_admin, url, {"every_days": -1, "window_start": "25:00"}, "put")

    assert response.status_code == 400
    assert set(response.json()) == {"every_days", "window_start"}
    assert (
        not RestoreTestPolicy.objects.exists() and not AuditEntry.objects.filter(action="restore_test.policy").exists()
    )


def test_auditors_read_but_cannot_act_and_helpdesk_is_refused(api_auditor, api_helpdesk, lab):
    test = finished(lab, "web-01", "old", "passed", 5)
    policy_url = f"/api/v1/restore-test-policies/{lab['group'].pk}/"

    for client in (api_auditor, api_helpdesk):
        assert send(client, URL, {"vm": "web-02"}).status_code == 403
        assert send(client, policy_url, {"every_days": 1}, "put").status_code == 403
    for url in (URL, f"{URL}{test.pk}/", policy_url):
        assert api_helpdesk.get(url).status_code == 403
        assert api_auditor.get(url).status_code == 200
    assert RestoreTest.objects.count() == 1 and not RestoreTestPolicy.objects.exists()


def test_a_read_only_token_reads_but_may_not_start_a_test(admin, lab):
    _, key = create_token(admin, admin, "dashboard", ApiToken.Scope.READ)
    client = Client(headers={"Authorization": f"Token {key}"})

    assert client.get(URL).status_code == 200
    refused = send(client, URL, {"vm": "web-01"})
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert (
        send(client, f"/api/v1/restore-test-policies/{lab['group'].pk}/", {"every_days": 1}, "put").status_code == 403
    )
    assert not RestoreTest.objects.exists() and not RestoreTestPolicy.objects.exists()
