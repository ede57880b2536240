"""A recovery point pinned while in use (an instant recovery runs from it): no path deletes it from any
tier, retention keeps it past its expiry and says so, GC keeps its chunks and tiering leaves them
where they are; once unpinned, the next prune removes it. Real points in the local store and a real
Azurite vault; the page, `manage.py vault` and jobs run through a real RQ worker."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import threading
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import JobRun
from tests.factories.archive import chunk_tiers, use_azure_vault
from tests.vault.app_points import back_up_point, protected_vm, replicate
from tests.vault.test_point_lock_race import DEADLINE, in_thread, sessions_waiting_for_a_row_lock
from tests.waiting import wait_until
from vault import actions, engine, pins
from vault.engine.blobs import ARCHIVE, HOT
from vault.models import PointPin, RecoveryPoint, VaultSettings
from vault.reconcile import reconcile
from vault.storage import local_store

pytestmark = pytest.mark.django_db
NOW = timezone.now()
IN_USE = "This recovery point is in use by instant recovery 12; stop or finish it first."


@pytest.fixture
def store_dir(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    return settings.BACKUP_STORE_DIR


@pytest.fixture
def lab(store_dir, tmp_path):
    """app-01 keeping its newest 2 points locally, and a way to give it points at chosen times."""
    vm, group = protected_vm(local_count=2)

    def make_point(created: dt.datetime, seed: int = 0) -> RecoveryPoint:
        return back_up_point(vm, group, tmp_path / f"img-{seed}", created, seed)[0]

    return vm, make_point


def test_a_pin_and_its_removal_are_audited_and_several_pins_can_hold_one_point(lab):
    vm, make_point = lab
    point = make_point(NOW)

    first = pins.pin(point, "instant recovery 12", "instant")
    second = pins.pin(point, "instant recovery 13", "instant")

    assert pins.is_pinned(point) and [p.reason for p in pins.pins_of(point)] == [first.reason, second.reason]
    pins.unpin(first, "instant")
    pins.unpin(first, "instant")  # a cleanup run twice changes nothing more
    assert pins.is_pinned(point)
    pins.unpin(second, "instant")
    assert not pins.is_pinned(point)
    actions_done = list(
        AuditEntry.objects.filter(action__startswith="point.")
        .order_by("pk")
        .values_list("action", "actor_name", "details__reason")
    )
    assert actions_done == [
        ("point.pin", "instant", "instant recovery 12"),
        ("point.pin", "instant", "instant recovery 13"),
        ("point.unpin", "instant", "instant recovery 12"),
        ("point.unpin", "instant", "instant recovery 13"),
    ]


def test_a_deleted_point_cannot_be_pinned(lab):
    vm, make_point = lab
    point = make_point(NOW)
    actions.delete_point(None, point)

    with pytest.raises(actions.VaultActionError, match="no longer exists"):
        pins.pin(point, "instant recovery 12", "instant")
    assert not PointPin.objects.exists()


def test_deleting_a_pinned_point_is_refused_by_the_page_the_command_line_and_the_action(lab, as_admin):
    vm, make_point = lab
    point = make_point(NOW)
    pins.pin(point, "instant recovery 12", "instant")

    assert "In use by instant recovery 12" in as_admin.get("/vault/").content.decode()
    response = as_admin.post(f"/vault/points/{point.pk}/delete/", {"confirm": vm.name}, follow=True)
    assert IN_USE in response.content.decode()
    with pytest.raises(CommandError, match="in use by instant recovery 12; stop or finish it first"):
        call_command("vault", "delete", str(point.pk), "--yes")
    with pytest.raises(actions.PointInUse) as refused:
        actions.delete_point(None, point)

    assert str(refused.value) == IN_USE
    assert RecoveryPoint.objects.filter(pk=point.pk, local=True).exists()
    assert engine.verify_point(local_store(), str(point.pk)).ok
    assert not AuditEntry.objects.filter(action="point.delete").exists()


def run_job(command: str, run_worker, capture) -> JobRun:
    """`manage.py vault COMMAND`, its job run by a real RQ worker; the run, reloaded."""
    with capture(execute=True):
        call_command("vault", command, stdout=io.StringIO())
    run_worker()
    return JobRun.objects.filter(kind=f"vault.{command}").latest("created")


def age_every_chunk(store_dir) -> None:
    """Chunks unused for two hours: past the GC's grace (its one-hour floor), so only a reference keeps them."""
    two_hours_ago = time.time() - 2 * 3600
    for chunk in (store_dir / "chunks").rglob("*"):
        if chunk.is_file():
            os.utime(chunk, (two_hours_ago, two_hours_ago))


def test_retention_keeps_a_pinned_point_past_its_expiry_says_so_and_removes_it_at_the_next_run_after_unpinning(
    lab, run_worker, django_capture_on_commit_callbacks
):
    vm, make_point = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(4)]  # keeps the newest 2
    pin = pins.pin(points[3], "instant recovery 12", "instant")

    run = run_job("prune", run_worker, django_capture_on_commit_callbacks)

    assert run.status == "succeeded" and run.result["removed"] == 1 and run.result["held"] == 1
    kept = f"Keeping {vm.name}"
    assert any(
        line["msg"].startswith(kept) and "in use by instant recovery 12, kept past its expiry" in line["msg"]
        for line in run.log
    ), run.log
    assert set(RecoveryPoint.objects.values_list("pk", flat=True)) == {p.pk for p in (points[0], points[1], points[3])}
    assert engine.verify_point(local_store(), str(points[3].pk)).ok

    pins.unpin(pin, "instant")
    run = run_job("prune", run_worker, django_capture_on_commit_callbacks)

    assert run.result["removed"] == 1 and run.result["held"] == 0
    assert set(local_store().list_points()) == {str(points[0].pk), str(points[1].pk)}


def test_a_pin_made_after_the_prune_plan_still_stops_the_removal(lab):
    vm, make_point = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(3)]
    plan = actions.plan_prune()
    assert [item.point.pk for item in plan.remove] == [points[2].pk]
    pins.pin(points[2], "instant recovery 12", "instant")

    done, problems = actions.apply_prune(plan)

    assert done == [] and problems == [f"{points[2]}: {IN_USE}"]
    assert RecoveryPoint.objects.filter(pk=points[2].pk, local=True).exists()


def test_garbage_collection_keeps_every_chunk_of_a_pinned_point_and_frees_them_once_it_is_unpinned(
    lab, store_dir, run_worker, django_capture_on_commit_callbacks
):
    vm, make_point = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(3)]
    pin = pins.pin(points[2], "instant recovery 12", "instant")
    VaultSettings.objects.update_or_create(pk=1, defaults={"gc_grace_hours": 1})
    run_job("prune", run_worker, django_capture_on_commit_callbacks)
    age_every_chunk(store_dir)

    run = run_job("gc", run_worker, django_capture_on_commit_callbacks)

    assert run.status == "succeeded" and run.result["local"]["chunks_swept"] == 0
    for point in points:
        assert engine.verify_point(local_store(), str(point.pk)).ok

    pins.unpin(pin, "instant")
    run_job("prune", run_worker, django_capture_on_commit_callbacks)
    age_every_chunk(store_dir)
    run = run_job("gc", run_worker, django_capture_on_commit_callbacks)

    assert run.result["local"]["chunks_swept"] == 3  # the pinned point's own chunks, freed at last
    for point in points[:2]:
        assert engine.verify_point(local_store(), str(point.pk)).ok


def test_reconcile_leaves_the_row_of_a_pinned_point_whose_store_copy_vanished(lab, store_dir):
    vm, make_point = lab
    point = make_point(NOW - dt.timedelta(days=2))
    pins.pin(point, "instant recovery 12", "instant")
    shutil.rmtree(store_dir / "points" / str(point.pk))  # lost behind the product's back

    report = reconcile(now=NOW + dt.timedelta(hours=1))

    assert [f.point_id for f in report.left_for_later] == [str(point.pk)]
    assert "instant recovery 12 uses it" in report.left_for_later[0].reason
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_tiering_leaves_a_pinned_points_chunks_readable_and_moves_them_after_unpinning(
    lab, azurite, azure_backend, run_worker, django_capture_on_commit_callbacks
):
    vm, make_point = lab
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    point = make_point(NOW - dt.timedelta(days=40))
    replicate(point)
    VaultSettings.objects.filter(pk=1).update(tier_after_days=30, tier=VaultSettings.Tier.ARCHIVE)
    pin = pins.pin(point, "instant recovery 12", "instant")

    run = run_job("tier", run_worker, django_capture_on_commit_callbacks)

    assert run.status == "succeeded" and run.result["chunks_moved"] == 0
    assert "1 point(s) in use (instant recovery) stay in their tier until that ends." in [m["msg"] for m in run.log]
    point.refresh_from_db()
    assert chunk_tiers() == {HOT} and point.vault_tier == ""

    pins.unpin(pin, "instant")
    run = run_job("tier", run_worker, django_capture_on_commit_callbacks)

    point.refresh_from_db()
    assert run.result["chunks_moved"] > 0 and chunk_tiers() == {ARCHIVE} and point.vault_tier == ARCHIVE


# Pin and delete at the same moment: two real PostgreSQL connections, ordered by events, not sleeps.


@pytest.mark.django_db(transaction=True)
def test_a_delete_that_starts_while_a_pin_is_being_made_waits_for_it_and_refuses(lab):
    vm, make_point = lab
    point = make_point(NOW - dt.timedelta(days=30))
    pinned, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def pin_and_hold_the_transaction_open() -> PointPin:
        with transaction.atomic():
            made = pins.pin(point, "instant recovery 12", "instant")
            pinned.set()
            assert release.wait(DEADLINE), "the test never let the pin commit"
        return made

    pinner = in_thread(pin_and_hold_the_transaction_open, outcome, "pin")
    assert pinned.wait(DEADLINE), "pin never took the row"
    deleter = in_thread(lambda: actions.delete_point(None, point), outcome, "delete")
    wait_until(lambda: sessions_waiting_for_a_row_lock() >= 1, what="the delete waits for the pin", timeout=DEADLINE)
    release.set()
    pinner.join(DEADLINE)
    deleter.join(DEADLINE)

    assert isinstance(outcome["pin"], PointPin), outcome["pin"]
    assert isinstance(outcome["delete"], actions.PointInUse) and str(outcome["delete"]) == IN_USE
    assert engine.verify_point(local_store(), str(point.pk)).ok


@pytest.mark.django_db(transaction=True)
def test_a_pin_that_starts_while_the_point_is_being_deleted_waits_and_is_refused(lab):
    vm, make_point = lab
    point = make_point(NOW - dt.timedelta(days=30))
    removed, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def delete_and_hold_the_transaction_open() -> None:
        with transaction.atomic():
            actions.delete_point(None, point)  # the store copy is gone now; the row's removal not yet committed
            removed.set()
            assert release.wait(DEADLINE), "the test never let the delete commit"

    deleter = in_thread(delete_and_hold_the_transaction_open, outcome, "delete")
    assert removed.wait(DEADLINE), "the delete never ran"
    pinner = in_thread(lambda: pins.pin(point, "instant recovery 12", "instant"), outcome, "pin")
    wait_until(lambda: sessions_waiting_for_a_row_lock() >= 1, what="the pin waits for the delete", timeout=DEADLINE)
    release.set()
    deleter.join(DEADLINE)
    pinner.join(DEADLINE)

    assert outcome["delete"] is None
    assert isinstance(outcome["pin"], actions.VaultActionError), outcome["pin"]
    assert "no longer exists" in str(outcome["pin"])
    assert not PointPin.objects.exists() and not RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_a_row_that_could_not_be_deleted_leaves_the_stored_point_untouched(lab):
    vm, make_point = lab
    point = make_point(NOW - dt.timedelta(days=30))
    PointPin.objects.create(point=point, reason="a record of a finished instant recovery", created_by="instant")

    with transaction.atomic(), pytest.raises(actions.VaultActionError) as refused:
        actions._remove_from_tiers(point, local=True, vault=True)  # behind the pin check: the row guard alone

    assert str(refused.value) == f"{point} was not deleted: point pins still refer to it."
    assert engine.verify_point(local_store(), str(point.pk)).ok


def test_a_pin_made_while_tiering_runs_is_reported_and_the_points_archive_state_is_still_recorded(
    lab, azurite, azure_backend, run_worker, django_capture_on_commit_callbacks, monkeypatch
):
    vm, make_point = lab
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    point = make_point(NOW - dt.timedelta(days=40))
    replicate(point)
    VaultSettings.objects.filter(pk=1).update(tier_after_days=30, tier=VaultSettings.Tier.ARCHIVE)
    real_tiering = engine.apply_tiering

    def pinned_meanwhile(*args: Any, **kwargs: Any) -> Any:
        report = real_tiering(*args, **kwargs)
        pins.pin(point, "instant recovery 12", "instant")  # after the job listed the points, before it ends
        return report

    monkeypatch.setattr(engine, "apply_tiering", pinned_meanwhile)
    run = run_job("tier", run_worker, django_capture_on_commit_callbacks)

    point.refresh_from_db()
    assert any(
        line["level"] == "warning" and vm.name in line["msg"] and "was pinned while tiering ran" in line["msg"]
        for line in run.log
    ), run.log
    assert point.vault_tier == ARCHIVE and point.archived_chunks  # what a mount checks before reading
