"""The Instant recoveries page and the start form of a recovery point, as alice (administrator), carol
(auditor) and bob (helpdesk): the buttons call instant.actions, which queue their jobs (not run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from instant import actions
from instant.models import InstantRecovery
from inventory.models import Host, VirtualMachine
from jobs.models import JobRun
from tests.dashboard.test_accessibility import Controls
from tests.factories.instant import instant_dir
from tests.factories.placement import start_placement_lab
from tests.factories.recovery import point_with_disks
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def point(vcsim_factory: Any, settings: Any, tmp_path: Path, redis_conn: Any) -> Any:
    """A point of lnx-01 (in vcsim's DC0/Prod, its inventory synced), with INSTANT_DIR set."""
    with instant_dir(settings):
        _, image = start_placement_lab(vcsim_factory, settings, tmp_path)
        vm = VirtualMachine.objects.get(name="lnx-01")
        yield point_with_disks(vm, vm.protection_group, {2000: image}, timezone.now())


def running(point: RecoveryPoint, name: str = "lnx-01-instant") -> InstantRecovery:
    """An instant recovery row in the state the start job leaves it (the job is not run here)."""
    host = Host.objects.get(name="DC0_H0")
    return InstantRecovery.objects.create(
        point=point,
        point_created=point.created,
        vm_name=name,
        source_vm=point.vm,
        host_moref=host.moref,
        host_name=host.name,
        state=InstantRecovery.State.RUNNING,
        datastore_name=f"vmb-instant-{name}",
        bytes_read=3 * 2**20,
    )


def test_an_administrator_starts_one_from_the_point_page(point: Any, as_admin: Any) -> None:
    page = as_admin.get(reverse("recovery:point", args=[point.pk])).content.decode()
    start_url = reverse("instant:start", args=[point.pk])
    assert start_url in page
    form = as_admin.get(start_url).content.decode()
    assert 'value="lnx-01-instant"' in form and "DC0/host/DC0_H0/DC0_H0" in form

    data = {"name": "lnx-01-instant", "host": "DC0/host/DC0_H0/DC0_H0", "connect_network": "on"}
    response = as_admin.post(start_url, data)

    assert response.status_code == 302, response.content.decode()
    recovery = InstantRecovery.objects.get()
    assert (recovery.vm_name, recovery.host_name, recovery.connect_network) == ("lnx-01-instant", "DC0_H0", True)
    run = JobRun.objects.get(kind=actions.START_KIND)
    assert recovery.job == run and run.status == JobRun.Status.QUEUED
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[run.pk])
    listing = as_admin.get(reverse("instant:index")).content.decode()
    assert "lnx-01-instant" in listing and 'hx-trigger="every 2s"' in listing  # polled while not final


def test_a_refused_start_says_why_in_one_sentence_and_queues_nothing(point: Any, as_admin: Any) -> None:
    response = as_admin.post(reverse("instant:start", args=[point.pk]), {"name": "spare-01"})
    assert response.status_code == 200
    assert "A VM named spare-01 exists already: choose another name." in response.content.decode()
    assert not InstantRecovery.objects.exists() and not JobRun.objects.exists()


def test_an_unknown_host_is_refused_by_the_form(point: Any, as_admin: Any) -> None:
    response = as_admin.post(reverse("instant:start", args=[point.pk]), {"name": "x-instant", "host": "DC0/host/nope"})
    assert response.status_code == 200 and not InstantRecovery.objects.exists()


def test_migrate_and_stop_buttons_queue_their_jobs(point: Any, as_admin: Any) -> None:
    first, second = running(point), running(point, "other-instant")
    page = as_admin.get(reverse("instant:index")).content.decode()
    assert "DC0/datastore/LocalDS_0" in page and "3.0\xa0MB" in page
    assert reverse("instant:migrate", args=[first.pk]) in page and reverse("instant:stop", args=[first.pk]) in page

    response = as_admin.post(reverse("instant:migrate", args=[first.pk]), {"datastore": "DC0/datastore/LocalDS_0"})
    assert response.status_code == 302 and response["Location"] == reverse("instant:index")
    migrate_run = JobRun.objects.get(kind=actions.MIGRATE_KIND)
    assert migrate_run.params["recovery_id"] == first.pk
    first.refresh_from_db()
    assert first.state == InstantRecovery.State.MIGRATING

    as_admin.post(reverse("instant:stop", args=[second.pk]))
    assert JobRun.objects.get(kind=actions.STOP_KIND).params == {"recovery_id": second.pk}
    second.refresh_from_db()
    assert second.state == InstantRecovery.State.STOPPING


def test_an_action_refused_is_one_sentence_on_the_page(point: Any, as_admin: Any) -> None:
    done = running(point)
    InstantRecovery.objects.filter(pk=done.pk).update(state=InstantRecovery.State.STOPPED)
    response = as_admin.post(reverse("instant:stop", args=[done.pk]), follow=True)
    assert "lnx-01-instant is not running from backup, so there is nothing to stop." in response.content.decode()
    nowhere = {"datastore": "DC0/datastore/nope"}
    response = as_admin.post(reverse("instant:migrate", args=[done.pk]), nowhere, follow=True)
    assert "lnx-01-instant was not migrated:" in response.content.decode()
    assert not JobRun.objects.exists()


def test_the_table_stops_polling_once_every_row_is_final(point: Any, as_admin: Any) -> None:
    done = running(point)
    InstantRecovery.objects.filter(pk=done.pk).update(state=InstantRecovery.State.FINISHED)
    fragment = as_admin.get(reverse("instant:index"), headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section id="instant-table"') and "hx-trigger" not in fragment


def test_an_auditor_sees_the_page_without_buttons_and_may_not_post(point: Any, as_auditor: Any) -> None:
    recovery = running(point)
    page = as_auditor.get(reverse("instant:index")).content.decode()
    assert "lnx-01-instant" in page and "Instant recoveries" in page
    assert reverse("instant:stop", args=[recovery.pk]) not in page
    assert reverse("instant:migrate", args=[recovery.pk]) not in page and "Migrate</button>" not in page
    datastore = {"datastore": "DC0/datastore/LocalDS_0"}
    assert as_auditor.post(reverse("instant:migrate", args=[recovery.pk]), datastore).status_code == 403
    assert as_auditor.post(reverse("instant:stop", args=[recovery.pk])).status_code == 403
    assert as_auditor.get(reverse("instant:start", args=[point.pk])).status_code == 403
    assert as_auditor.post(reverse("instant:start", args=[point.pk]), {"name": "x"}).status_code == 403
    assert not JobRun.objects.exists()


def test_helpdesk_gets_no_instant_route(point: Any, as_helpdesk: Any) -> None:
    recovery = running(point)
    assert "Instant recoveries" not in as_helpdesk.get(reverse("dashboard:overview")).content.decode()
    answers = [
        as_helpdesk.get(reverse("instant:index")),
        as_helpdesk.get(reverse("instant:start", args=[point.pk])),
        as_helpdesk.post(reverse("instant:start", args=[point.pk]), {"name": "x"}),
        as_helpdesk.post(reverse("instant:migrate", args=[recovery.pk]), {"datastore": "DC0/datastore/LocalDS_0"}),
        as_helpdesk.post(reverse("instant:stop", args=[recovery.pk])),
    ]
    assert all(answer.status_code in (403, 404) for answer in answers)
    assert not JobRun.objects.exists()


def test_every_control_of_the_pages_has_a_label(point: Any, as_admin: Any) -> None:
    running(point)
    for url in (reverse("instant:index"), reverse("instant:start", args=[point.pk])):
        parser = Controls()
        parser.feed(as_admin.get(url).content.decode())
        labelled = parser.label_for
        assert all(c["_wrapped"] == "True" or c.get("id") in labelled for c in parser.controls), parser.controls
        assert all(parser.badges), parser.badges
