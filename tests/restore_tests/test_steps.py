"""How a restore test records its checks: a check that ends normally is ok unless it said otherwise
(cleanup that could not remove everything records itself failed without failing the test)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.models import JobRun
from jobs.runner import JobContext
from restore_tests.jobs import CheckFailed, Proof
from restore_tests.models import RestoreTest, RestoreTestPolicy
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


def proof() -> Proof:
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "web-01")
    run = JobRun.objects.create(kind="restore_tests.run", status=JobRun.Status.RUNNING, started=timezone.now())
    test = RestoreTest.objects.create(vm=vm, state=RestoreTest.State.RUNNING, job=run)
    return Proof(JobContext(run), test, RestoreTestPolicy())


def test_a_check_that_marks_itself_failed_is_recorded_failed_and_the_others_ok() -> None:
    checks = proof()
    with checks.step("heartbeat"):
        pass
    with checks.step("cleanup") as entry:
        entry.update(ok=False, detail="datastore vmb-instant-3 is still in vCenter")
    with pytest.raises(CheckFailed), checks.step("canary"):
        raise CheckFailed("canary", "/db is on no volume of the point")

    assert [(s["check"], s["ok"]) for s in checks.steps] == [("heartbeat", True), ("cleanup", False), ("canary", False)]
    assert RestoreTest.objects.get().steps == checks.steps  # written to the row as they happen
