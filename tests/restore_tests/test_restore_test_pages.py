"""The Restore tests page and a group's policy form, as alice (administrator), carol (auditor) and bob
(helpdesk): "Test now" queues a test through restore_tests.actions.start_test (its job is queued, not
run here) and the policy form saves through actions.save_policy, audited."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from inventory.models import Host, VirtualMachine
from jobs.models import JobRun
from protection.models import ProtectionGroup
from restore_tests import actions
from restore_tests.models import RestoreTest, RestoreTestPolicy
from tests.dashboard.test_accessibility import Controls
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
HOSTILE = "<script>alert(1)</script>"


class Lab(NamedTuple):
    group: ProtectionGroup
    web: VirtualMachine
    hostile: VirtualMachine
    bare: VirtualMachine  # protected, no point yet
    host: Host


def a_point(vm: VirtualMachine, hours_ago: int = 1) -> RecoveryPoint:
    taken = timezone.now() - dt.timedelta(hours=hours_ago)
    return RecoveryPoint.objects.create(vm=vm, group=vm.protection_group, created=taken, completed=taken)


@pytest.fixture
def lab() -> Lab:
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod"])
    web, hostile, bare = (create_test_vm(folders["Prod"], name) for name in ("web-01", HOSTILE, "bare-01"))
    group = protect_vms("Prod", [web, hostile, bare])
    for vm in (web, hostile):
        a_point(vm)
    datacenter = folders["Prod"].datacenter
    host = Host.objects.create(
        vcenter=vc, moref="host-1", name="esx01", datacenter=datacenter, inventory_path="DC1/host/esx01/esx01"
    )
    return Lab(group, web, hostile, bare, host)


def finished(vm: VirtualMachine, state: str, **fields: Any) -> RestoreTest:
    """A test as the run job leaves it (the job itself is not run here)."""
    point = RecoveryPoint.objects.filter(vm=vm).first()
    now = timezone.now()
    return RestoreTest.objects.create(
        vm=vm, point=point, point_created=point.created if point else None, group=vm.protection_group,
        state=state, started=now - dt.timedelta(seconds=75), finished=now, test_vm_name=f"vmb-test-{vm.name}",
        **fields,
    )  # fmt: skip


POLICY = {
    "enabled": "on", "every_days": "3", "window_start": "22:00", "window_hours": "6", "max_concurrent": "2",
    "host": "DC1/host/esx01/esx01", "name_prefix": "vmb-test-", "heartbeat_seconds": "300", "network": "",
    "tcp_port": "", "canary_path": "", "canary_min_bytes": "1",
}  # fmt: skip


def test_an_administrator_queues_a_test_now_and_follows_its_job(lab: Lab, as_admin: Any) -> None:
    page = as_admin.get(reverse("restore_tests:index")).content.decode()
    assert reverse("restore_tests:start") in page and "Test now</button>" in page
    assert f'value="{lab.web.pk}"' in page and f'value="{lab.bare.pk}"' not in page  # only VMs with points

    response = as_admin.post(reverse("restore_tests:start"), {"vm": lab.web.pk})

    test = RestoreTest.objects.get()
    run = JobRun.objects.get(kind=actions.RUN_KIND)
    assert test.vm == lab.web and test.job == run and run.status == JobRun.Status.QUEUED
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[run.pk])
    assert AuditEntry.objects.filter(action="restore_test.start").count() == 1
    listing = as_admin.get(reverse("restore_tests:index")).content.decode()
    assert f'id="restore-test-{test.pk}"' in listing and 'hx-trigger="every 2s"' in listing  # polled while queued


def test_a_refused_test_is_one_sentence_and_queues_nothing(lab: Lab, as_admin: Any) -> None:
    as_admin.post(reverse("restore_tests:start"), {"vm": lab.web.pk})
    response = as_admin.post(reverse("restore_tests:start"), {"vm": lab.web.pk}, follow=True)
    assert "A restore test of web-01 is queued or running already." in response.content.decode()
    assert RestoreTest.objects.count() == 1 and JobRun.objects.count() == 1

    response = as_admin.post(reverse("restore_tests:start"), {"vm": lab.bare.pk}, follow=True)
    assert "No restore test was queued: choose a VM that has a recovery point." in response.content.decode()
    assert RestoreTest.objects.count() == 1


def test_the_queue_shows_the_current_step_and_stops_polling_when_none_is_active(lab: Lab, as_admin: Any) -> None:
    running = finished(lab.web, RestoreTest.State.RUNNING, steps=[{"check": "volumes", "ok": True, "seconds": 2.5}])
    RestoreTest.objects.filter(pk=running.pk).update(finished=None)
    hx = {"HX-Request": "true"}
    fragment = as_admin.get(reverse("restore_tests:index"), headers=hx).content.decode()
    assert fragment.lstrip().startswith('<section id="restore-test-activity"') and "every 2s" in fragment
    assert "volumes" in fragment and "<h1>" not in fragment

    RestoreTest.objects.filter(pk=running.pk).update(state=RestoreTest.State.PASSED, finished=timezone.now())
    fragment = as_admin.get(reverse("restore_tests:index"), headers=hx).content.decode()
    assert "hx-trigger" not in fragment and "passed" in fragment


def test_the_history_shows_results_steps_and_why_a_test_failed(lab: Lab, as_admin: Any) -> None:
    steps = [
        {"check": "volumes", "ok": True, "seconds": 4.2, "detail": "2 volumes"},
        {"check": "heartbeat", "ok": False, "seconds": 600.0, "detail": "no heartbeat"},
    ]
    finished(lab.web, RestoreTest.State.PASSED, bytes_read=3 * 2**20)
    finished(
        lab.web, RestoreTest.State.FAILED, steps=steps, failed_check="heartbeat",
        error="VMware Tools did not report a heartbeat within 600 s.",
    )  # fmt: skip
    finished(lab.hostile, RestoreTest.State.ERROR, error="vCenter vc1 cannot be reached.")

    page = as_admin.get(reverse("restore_tests:index")).content.decode()

    assert "heartbeat: VMware Tools did not report a heartbeat within 600 s." in page
    assert "could not run" in page and "vCenter vc1 cannot be reached." in page
    assert ">passed</span>" in page and "3.0\xa0MB" in page and "1 min 15 s" in page
    assert "<details><summary>2 steps</summary>" in page and "no heartbeat" in page and "600.0" in page
    assert "vmb-test-web-01" in page


def test_the_schedule_lists_each_group_with_its_policy_and_overdue_vms(lab: Lab, as_admin: Any) -> None:
    other = ProtectionGroup.objects.create(name="Branch")
    VirtualMachine.objects.filter(pk__in=[lab.web.pk, lab.hostile.pk]).update(proof_overdue=True)
    actions.save_policy(None, lab.group, every_days=3, window_hours=6, host=lab.host, tcp_port=22, network="iso")

    page = as_admin.get(reverse("restore_tests:index")).content.decode()

    prod = page.split(f'id="schedule-{lab.group.pk}"')[1].split("</tr>")[0]
    assert "every 3 days" in prod and "from 00:00 for 6 h" in prod and "1 at once" in prod
    assert "DC1/host/esx01/esx01" in prod and "network iso" in prod and "TCP port 22" in prod
    assert '<span class="warn">2</span>' in prod
    assert reverse("restore_tests:policy", args=[lab.group.pk]) in prod
    branch = page.split(f'id="schedule-{other.pk}"')[1].split("</tr>")[0]
    assert "No policy: the defaults (every 7 days" in branch and "network adapters disconnected" in branch


def test_an_administrator_saves_a_policy_and_it_is_audited(lab: Lab, as_admin: Any) -> None:
    url = reverse("restore_tests:policy", args=[lab.group.pk])
    form = as_admin.get(url).content.decode()
    assert "DC1/host/esx01/esx01" in form and "every network adapter of the test VM disconnected" in form

    response = as_admin.post(url, POLICY)

    assert response.status_code == 302 and response["Location"] == reverse("restore_tests:index")
    policy = RestoreTestPolicy.objects.get(group=lab.group)
    assert (policy.every_days, policy.window_start, policy.window_hours) == (3, dt.time(22, 0), 6)
    assert (policy.host, policy.max_concurrent, policy.network, policy.tcp_port) == (lab.host, 2, "", None)
    entry = AuditEntry.objects.get(action="restore_test.policy")
    assert entry.actor_name == "alice" and entry.details["every_days"] == "3"


def test_a_tcp_check_without_a_network_is_a_field_error_and_saves_nothing(lab: Lab, as_admin: Any) -> None:
    url = reverse("restore_tests:policy", args=[lab.group.pk])
    response = as_admin.post(url, {**POLICY, "tcp_port": "443"})
    assert response.status_code == 200
    assert "A TCP check needs the isolated network the test VM is connected to." in response.content.decode()
    response = as_admin.post(url, {**POLICY, "every_days": "many", "host": "DC1/host/nope"})
    assert response.status_code == 200 and "Enter a whole number." in response.content.decode()
    assert not RestoreTestPolicy.objects.exists() and not AuditEntry.objects.filter(action="restore_test.policy")

    as_admin.post(url, {**POLICY, "tcp_port": "443", "network": "isolated-lab"})
    assert RestoreTestPolicy.objects.get().tcp_port == 443


def test_an_auditor_sees_the_page_read_only_and_may_not_change_anything(lab: Lab, as_auditor: Any) -> None:
    finished(lab.web, RestoreTest.State.PASSED)
    page = as_auditor.get(reverse("restore_tests:index")).content.decode()
    assert "Restore tests" in page and "vmb-test-web-01" in page
    assert "Test now</button>" not in page and reverse("restore_tests:start") not in page
    assert reverse("restore_tests:policy", args=[lab.group.pk]) not in page
    # The schedule on the page shows the policy; the form is the administrators'.
    url = reverse("restore_tests:policy", args=[lab.group.pk])
    assert as_auditor.get(url).status_code == 403 and as_auditor.post(url, POLICY).status_code == 403
    assert as_auditor.post(reverse("restore_tests:start"), {"vm": lab.web.pk}).status_code == 403
    assert RestoreTest.objects.count() == 1 and not JobRun.objects.exists() and not RestoreTestPolicy.objects.exists()


def test_helpdesk_gets_no_restore_test_route_nor_its_fragment(lab: Lab, as_helpdesk: Any) -> None:
    assert "Restore tests" not in as_helpdesk.get(reverse("dashboard:overview")).content.decode()
    url = reverse("restore_tests:policy", args=[lab.group.pk])
    answers = [
        as_helpdesk.get(reverse("restore_tests:index")),
        as_helpdesk.get(reverse("restore_tests:index"), headers={"HX-Request": "true"}),
        as_helpdesk.post(reverse("restore_tests:start"), {"vm": lab.web.pk}),
        as_helpdesk.get(url),
        as_helpdesk.post(url, POLICY),
    ]
    assert [answer.status_code for answer in answers] == [403] * 5
    assert not RestoreTest.objects.exists() and not JobRun.objects.exists() and not RestoreTestPolicy.objects.exists()


def test_the_nav_links_the_page_for_those_who_may_see_it(lab: Lab, as_admin: Any, as_auditor: Any) -> None:
    link = f'href="{reverse("restore_tests:index")}"'
    assert link in as_admin.get(reverse("dashboard:overview")).content.decode()
    assert link in as_auditor.get(reverse("dashboard:overview")).content.decode()


def test_a_hostile_vm_name_is_shown_escaped(lab: Lab, as_admin: Any) -> None:
    finished(lab.hostile, RestoreTest.State.FAILED, failed_check="volumes", error=f"{HOSTILE} is damaged.")
    page = as_admin.get(reverse("restore_tests:index")).content.decode()
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_every_control_of_the_pages_has_a_label(lab: Lab, as_admin: Any) -> None:
    finished(lab.web, RestoreTest.State.PASSED, steps=[{"check": "volumes", "ok": True, "seconds": 1.0}])
    for url in (reverse("restore_tests:index"), reverse("restore_tests:policy", args=[lab.group.pk])):
        parser = Controls()
        parser.feed(as_admin.get(url).content.decode())
        labelled = parser.label_for
        assert parser.controls
        assert all(c["_wrapped"] == "True" or c.get("id") in labelled for c in parser.controls), parser.controls
        assert all(parser.badges), parser.badges
