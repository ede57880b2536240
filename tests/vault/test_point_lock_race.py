"""The retention-lock check of the delete path holds the point's row from the check to the removal,
so a lock set at the same moment is either seen or waits: never "checked unlocked, then deleted while
the lock was being committed". Two real PostgreSQL connections, ordered by events, not sleeps."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.vault.pointlab import point_with_row, small_image
from tests.waiting import wait_until
from vault import actions
from vault.models import RecoveryPoint
from vault.storage import local_store

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE = 30.0


def in_thread(work: Callable[[], Any], outcome: dict[str, Any], name: str) -> threading.Thread:
    """Run `work` on its own database connection; its result or exception lands in outcome[name]."""

    def run() -> None:
        try:
            outcome[name] = work()
        except Exception as exc:  # the test asserts on it
            outcome[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def sessions_waiting_for_a_row_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def point(settings, tmp_path) -> RecoveryPoint:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "app-01")
    group = protect_vms("Prod", [vm])
    return point_with_row(small_image(tmp_path, 1), vm, group, timezone.now() - dt.timedelta(days=30))


def test_a_removal_that_starts_while_a_lock_is_being_set_waits_for_it_and_refuses(point):
    locked, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def lock_and_hold_the_transaction_open() -> RecoveryPoint:
        with transaction.atomic():
            result = actions.lock_point(None, point, timezone.now() + dt.timedelta(days=365))
            locked.set()
            assert release.wait(DEADLINE), "the test never let the lock commit"
        return result

    locker = in_thread(lock_and_hold_the_transaction_open, outcome, "lock")
    assert locked.wait(DEADLINE), "lock_point never took the row"
    remover = in_thread(lambda: actions._remove_point(point, local=True, vault=False), outcome, "remove")
    # The removal must now be blocked on the row the lock holds, not deciding on what it read before.
    wait_until(
        lambda: sessions_waiting_for_a_row_lock() >= 1, what="the removal waits for the row lock", timeout=DEADLINE
    )
    release.set()
    locker.join(DEADLINE)
    remover.join(DEADLINE)

    assert isinstance(outcome["lock"], RecoveryPoint), outcome["lock"]
    assert isinstance(outcome["remove"], actions.PointLocked), outcome["remove"]
    assert "retention lock" in str(outcome["remove"])
    assert RecoveryPoint.objects.filter(pk=point.pk, local=True, locked_until__isnull=False).exists()
    assert str(point.pk) in local_store().list_points()
