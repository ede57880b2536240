"""/api/v1/instant-recoveries/: administrators list, open, start (host by path or id), migrate and stop
instant recoveries, each an audited action that queues its job and answers 202 with it; auditors
read and are refused acting; restore operators are refused; mistakes are a 400 or 409 that says why.
The jobs themselves (vCenter, NFS) are tests/instant/'s: here they are only queued."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from instant import actions
from instant.models import InstantRecovery
from inventory.models import Datastore, Host, ResourcePool
from jobs.models import JobRun
from tests.api.conftest import plain_point

pytestmark = pytest.mark.django_db
URL = "/api/v1/instant-recoveries/"


@pytest.fixture
def lab(inventory: dict[str, Any]) -> dict[str, Any]:
    """web-01 with a point, a host and a root pool in its datacenter, and a datastore to migrate to."""
    vm = inventory["vms"]["web-01"]
    where = {"vcenter": vm.vcenter, "datacenter": vm.datacenter}
    host = Host.objects.create(**where, moref="host-1", name="esx1", inventory_path="DC1/host/C1/esx1")
    ResourcePool.objects.create(**where, moref="resgroup-1", name="Resources", inventory_path="DC1/host/C1/Resources")
    datastore = Datastore.objects.create(**where, moref="ds-2", name="ds2", inventory_path="DC1/datastore/ds2")
    point = plain_point(vm, inventory["group"], timezone.now() - timedelta(hours=1))
    return {"vm": vm, "host": host, "datastore": datastore, "point": point}


def post(client: Any, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, json.dumps(body or {}), "application/json")


def running(recovery: InstantRecovery) -> InstantRecovery:
    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.RUNNING)
    recovery.refresh_from_db()
    return recovery


def test_an_administrator_starts_one_by_host_path_and_gets_the_queued_job(api_admin, lab):
    body = {"point": str(lab["point"].pk), "name": "web-01-try", "host": "DC1/host/C1/esx1", "connect_network": True}

    response = post(api_admin, URL, body)

    assert response.status_code == 202, response.content
    answer = response.json()
    run = JobRun.objects.get(kind=actions.START_KIND)
    assert answer["job"]["id"] == str(run.pk) and run.status == JobRun.Status.QUEUED
    assert answer["detail"] == f"{run.title}: queued."
    recovery = InstantRecovery.objects.get()
    assert answer["instant_recovery"]["id"] == recovery.pk
    assert (recovery.vm_name, recovery.host_name, recovery.connect_network) == ("web-01-try", "esx1", True)
    entry = AuditEntry.objects.get(action="instant.start")
    assert entry.actor_name == "alice" and entry.details["host"] == "esx1"


def test_the_host_may_be_given_by_id_or_left_to_the_vms_datacenter(api_admin, lab):
    by_id = post(api_admin, URL, {"point": str(lab["point"].pk), "name": "a-1", "host": lab["host"].pk})
    default = post(api_admin, URL, {"point": str(lab["point"].pk)})

    assert (by_id.status_code, default.status_code) == (202, 202), (by_id.content, default.content)
    assert default.json()["instant_recovery"]["vm_name"] == "web-01-instant"
    assert set(InstantRecovery.objects.values_list("host_name", flat=True)) == {"esx1"}


def test_an_unknown_host_path_is_a_400_that_says_why_and_starts_nothing(api_admin, lab):
    response = post(api_admin, URL, {"point": str(lab["point"].pk), "host": "DC1/host/C1/nope"})

    assert response.status_code == 400
    assert response.json() == {"host": ["There is no host 'DC1/host/C1/nope' here. Known hosts: DC1/host/C1/esx1."]}
    assert not InstantRecovery.objects.exists() and not JobRun.objects.exists()


def test_a_refused_start_is_a_409_with_one_sentence(api_admin, lab):
    response = post(api_admin, URL, {"point": str(lab["point"].pk), "name": "web-02"})  # a VM has that name

    assert response.status_code == 409
    assert response.json() == {"detail": "A VM named web-02 exists already: choose another name."}
    assert not InstantRecovery.objects.exists()
    missing = post(api_admin, URL, {"point": "00000000-0000-0000-0000-000000000000"})
    assert missing.status_code == 400 and "No such recovery point" in missing.json()["point"][0]


def test_list_and_detail_show_each_recovery(api_admin, api_auditor, lab, admin):
    recovery = actions.start_instant_recovery(admin, lab["point"], name="web-01-b")

    listed = api_auditor.get(URL).json()
    detail = api_auditor.get(f"{URL}{recovery.pk}/").json()

    assert listed["count"] == 1 and listed["results"] == [detail]
    assert detail["vm_name"] == "web-01-b" and detail["source_vm"] == {"id": lab["vm"].pk, "name": "web-01"}
    assert detail["point"] == str(lab["point"].pk) and detail["state"] == "queued"
    assert detail["job"] == str(recovery.job_id) and detail["requested_by"] == "alice"
    assert api_admin.get(f"{URL}999999/").status_code == 404


def test_migrate_and_stop_queue_their_jobs(api_admin, lab, admin):
    recovery = running(actions.start_instant_recovery(admin, lab["point"], name="web-01-c"))

    migrated = post(api_admin, f"{URL}{recovery.pk}/migrate/", {"datastore": "DC1/datastore/ds2"})

    assert migrated.status_code == 202, migrated.content
    run = JobRun.objects.get(kind=actions.MIGRATE_KIND)
    assert migrated.json()["job"]["id"] == str(run.pk) and run.params["datastore_moref"] == "ds-2"
    again = post(api_admin, f"{URL}{recovery.pk}/migrate/", {"datastore": "ds2"})
    assert again.status_code == 409
    assert again.json() == {"detail": "web-01-c is not running from backup, so it cannot be migrated."}

    running(recovery)
    stopped = post(api_admin, f"{URL}{recovery.pk}/stop/")
    assert stopped.status_code == 202, stopped.content
    assert stopped.json()["job"]["id"] == str(JobRun.objects.get(kind=actions.STOP_KIND).pk)
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPING
    assert AuditEntry.objects.filter(action__in=["instant.migrate", "instant.stop"]).count() == 2


def test_an_unknown_datastore_is_a_400_that_says_why(api_admin, lab, admin):
    recovery = running(actions.start_instant_recovery(admin, lab["point"], name="web-01-d"))

    response = post(api_admin, f"{URL}{recovery.pk}/migrate/", {"datastore": "nope"})

    assert response.status_code == 400
    assert response.json()["datastore"][0].startswith("There is no datastore 'nope' here.")
    assert not JobRun.objects.filter(kind=actions.MIGRATE_KIND).exists()


def test_an_auditor_reads_but_cannot_act_and_helpdesk_is_refused(api_auditor, api_helpdesk, lab, admin):
    recovery = running(actions.start_instant_recovery(admin, lab["point"], name="web-01-e"))
    acts = [
        (URL, {"point": str(lab["point"].pk)}),
        (f"{URL}{recovery.pk}/migrate/", {"datastore": "ds2"}),
        (f"{URL}{recovery.pk}/stop/", {}),
    ]

    for url, body in acts:
        assert post(api_auditor, url, body).status_code == 403
        assert post(api_helpdesk, url, body).status_code == 403
    assert api_helpdesk.get(URL).status_code == 403
    assert api_helpdesk.get(f"{URL}{recovery.pk}/").status_code == 403
    assert api_auditor.get(f"{URL}{recovery.pk}/").status_code == 200
    assert InstantRecovery.objects.get().state == InstantRecovery.State.RUNNING
    assert JobRun.objects.count() == 1  # the start's only
