"""A recovery point pinned while in use (an instant recovery runs from it): no path deletes it from any
tier, retention keeps it past its expiry and says so, GC keeps its chunks and tiering leaves them
where they are; once unpinned, the next prune removes it. Real points in the local store and a real
directory vault; the page, `manage.py vault` and jobs run through a real RQ worker."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from tests.vault.app_points import back_up_point, protected_vm
from vault import actions, engine, pins
from vault.models import PointPin, RecoveryPoint
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
