"""`manage.py restore-test`: queues an audited restore test per VM (named, or every VM of a group),
with a chosen point for one VM, and says which job runs it; lists the tests newest first as a table or
JSON; an unknown VM, group or point, or a refused test, is one sentence. The job itself is
tests/restore_tests' other tests' concern: here it is only queued."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import JobRun
from restore_tests.actions import RUN_KIND
from restore_tests.models import RestoreTest
from tests.api.conftest import plain_point
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab() -> dict[str, Any]:
    """web-01 (two points) and web-02 (one) in group Prod; db-01 protected by nobody, without points."""
    folder = create_test_tree(create_test_vcenter(), ["Prod"])["Prod"]
    vms = {name: create_test_vm(folder, name) for name in ("web-01", "web-02", "db-01")}
    group = protect_vms("Prod", [vms["web-01"], vms["web-02"]])
    now = timezone.now()
    points = {
        "old": plain_point(vms["web-01"], group, now - timedelta(days=2)),
        "new": plain_point(vms["web-01"], group, now - timedelta(hours=1)),
        "web-02": plain_point(vms["web-02"], group, now - timedelta(hours=3)),
    }
    return {"vms": vms, "group": group, "points": points}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("restore-test", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_queues_a_test_of_the_vms_newest_point_and_names_the_job(lab):
    output = run("web-01")

    test = RestoreTest.objects.get()
    run_row = JobRun.objects.get(kind=RUN_KIND)
    assert output == f"Restore test {test.pk} of web-01: job {run_row.pk}.\n"
    assert test.point == lab["points"]["new"] and test.job == run_row and test.state == "queued"
    assert run_row.status == JobRun.Status.QUEUED and run_row.params == {"test_id": test.pk}
    entry = AuditEntry.objects.get(action="restore_test.start")
    assert entry.actor_name == "command line" and entry.details["point"] == str(lab["points"]["new"].pk)


def test_a_point_may_be_chosen_by_its_id_prefix(lab):
    old = lab["points"]["old"]

    run("web-01", "--point", str(old.pk)[:8])

    assert RestoreTest.objects.get().point == old


def test_a_group_queues_one_test_per_vm_it_covers(lab):
    output = run("--group", "Prod")

    tests = {t.vm.name: t for t in RestoreTest.objects.select_related("vm")}
    assert set(tests) == {"web-01", "web-02"}
    assert output.splitlines() == [
        f"Restore test {tests[name].pk} of {name}: job {tests[name].job_id}." for name in ("web-01", "web-02")
    ]
    assert all(t.group == lab["group"] for t in tests.values())
    assert AuditEntry.objects.filter(action="restore_test.start").count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "'nope' names no VM."),
        (("--group", "Nope"), "There is no protection group 'Nope'."),
        (("web-01", "--point", "ffffffff"), "ffffffff: no recovery point of web-01."),
        (("web-01", "web-02", "--point", "ab"), "--point goes with exactly one VM."),
        ((), "Name the VMs to test, or --group NAME (not both), or `list`."),
        (("db-01",), "db-01 has no recovery point that can be tested."),
    ],
)
def test_a_mistake_is_one_sentence_and_queues_nothing(lab, args, message):
    with pytest.raises(CommandError) as raised:
        run(*args)

    assert str(raised.value) == message
    assert not RestoreTest.objects.exists() and not JobRun.objects.exists()


def test_a_second_test_of_a_vm_is_refused_while_one_is_queued_and_the_others_still_go(lab):
    run("web-01")

    with pytest.raises(CommandError) as single:
        run("web-01")
    assert str(single.value) == "A restore test of web-01 is queued or running already."
    err = io.StringIO()
    with pytest.raises(CommandError) as group:
        call_command("restore-test", "--group", "Prod", stdout=io.StringIO(), stderr=err)
    assert str(group.value) == "1 of 2 restore tests were not queued or did not pass."
    assert "A restore test of web-01 is queued or running already." in err.getvalue()
    assert RestoreTest.objects.filter(vm__name="web-02").count() == 1
    assert RestoreTest.objects.count() == 2


def _finished(lab: dict[str, Any], vm: str, point: str, state: str, hours_ago: float, **fields: Any) -> RestoreTest:
    started = timezone.now() - timedelta(hours=hours_ago)
    p = lab["points"][point]
    test = RestoreTest.objects.create(
        vm=lab["vms"][vm], point=p, point_created=p.created, group=lab["group"], state=state,
        started=started, finished=started + timedelta(seconds=42), bytes_read=123456, **fields,
    )  # fmt: skip
    RestoreTest.objects.filter(pk=test.pk).update(queued=started)
    return test


def test_list_shows_the_tests_newest_first_as_a_table_and_as_json(lab):
    older = _finished(lab, "web-01", "old", "passed", 5)
    newer = _finished(
        lab, "web-02", "web-02", "failed", 1, failed_check="heartbeat", error="VMware Tools did not report running"
    )

    table = run("list").splitlines()
    rows = json.loads(run("list", "--json"))

    assert table[0].split() == ["ID", "VM", "POINT", "STATE", "FAILED", "CHECK", "ERROR", "STARTED", "DURATION", "READ"]
    assert [line.split()[:2] for line in table[1:]] == [[str(newer.pk), "web-02"], [str(older.pk), "web-01"]]
    assert "heartbeat" in table[1] and "VMware Tools did not report running" in table[1] and "42 s" in table[1]
    assert [r["id"] for r in rows] == [newer.pk, older.pk]
    assert rows[0]["state"] == "failed" and rows[0]["failed_check"] == "heartbeat"
    assert rows[1]["duration_seconds"] == 42.0 and rows[1]["bytes_read"] == 123456
    assert rows[1]["point"] == str(lab["points"]["old"].pk)


@pytest.mark.django_db(transaction=True)
def test_wait_follows_the_job_and_fails_with_its_sentence_when_the_test_could_not_run(lab, run_worker):
    """The command waits in a thread while a real RQ worker runs the job here; the point is deleted
    in between, so the test cannot run, and --wait says why."""
    out, err = io.StringIO(), io.StringIO()
    raised: list[BaseException] = []

    def command() -> None:
        try:
            call_command("restore-test", "web-02", "--wait", stdout=out, stderr=err)
        except CommandError as exc:
            raised.append(exc)
        finally:
            connection.close()

    waiting = threading.Thread(target=command)
    waiting.start()
    run_row = wait_until(lambda: JobRun.objects.filter(kind=RUN_KIND).first(), what="the test is queued")
    assert run_row is not None
    lab["points"]["web-02"].delete()
    run_worker()
    waiting.join(60)

    assert not waiting.is_alive()
    assert out.getvalue().startswith(f"Restore test {RestoreTest.objects.get().pk} of web-02: job {run_row.pk}.\n")
    assert [str(e) for e in raised] == [f"{run_row.title} failed: Its recovery point was deleted before the test ran."]
    assert RestoreTest.objects.get().state == RestoreTest.State.ERROR
