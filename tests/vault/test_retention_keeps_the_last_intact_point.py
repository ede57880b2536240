"""Retention never removes the newest intact point of a VM while its newer points are damaged: those
newer points cannot be restored, so counting them as "the newest" would let the last good one age out."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.factories.protection import POLICY, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.vault.pointlab import point_with_row, small_image
from vault import actions
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store

pytestmark = pytest.mark.django_db
NOW = timezone.now()
HELD = "the newest intact point: newer points are damaged"
REPLICATED = RecoveryPoint.VaultStatus.REPLICATED
# Two points on this server, two days in the vault: the two newest of four, in both tiers.
TWO_OF_EACH = {
    **POLICY,
    "local_days": None,
    "local_count": 2,
    "vault_daily": 2,
    "vault_weekly": 0,
    "vault_monthly": 0,
    "vault_yearly": 0,
}


@pytest.fixture
def four_days(settings, tmp_path):
    """Four daily points of one VM, newest first, in the local store and (as their rows say) in a
    directory vault, so none waits for a copy before leaving this server."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    (tmp_path / "vault").mkdir()
    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": str(tmp_path / "vault")})
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "db-01")
    group = protect_vms("Prod", [vm], TWO_OF_EACH)
    return [
        point_with_row(small_image(tmp_path, day), vm, group, NOW - dt.timedelta(days=day), vault_status=REPLICATED)
        for day in range(4)
    ]


def damage(*points: RecoveryPoint) -> None:
    RecoveryPoint.objects.filter(pk__in=[p.pk for p in points]).update(
        damaged=True, damage=["local: chunk 00ff… fails its hash check"], damaged_at=NOW
    )


def planned(items: list[actions.PruneItem]) -> list[tuple[str, object, str]]:
    return sorted((item.tier, item.point.pk, item.reason) for item in items)


def test_the_newest_intact_point_is_held_in_both_tiers_while_the_newer_points_are_damaged(four_days):
    newest, second, third, oldest = four_days
    damage(newest, second)

    plan = actions.plan_prune()

    assert planned(plan.held) == [("local", third.pk, HELD), ("vault", third.pk, HELD)]
    assert sorted((item.tier, item.point.pk) for item in plan.remove) == [("local", oldest.pk), ("vault", oldest.pk)]


def test_applying_the_plan_leaves_the_newest_intact_point_in_the_store(four_days):
    newest, second, third, oldest = four_days
    damage(newest, second)

    done, problems = actions.apply_prune(actions.plan_prune())

    assert not problems and {item.point.pk for item in done} == {oldest.pk}
    third.refresh_from_db()
    assert third.local and str(third.pk) in local_store().list_points()


def test_without_damage_the_same_points_go_as_the_rules_say(four_days):
    newest, second, third, oldest = four_days

    plan = actions.plan_prune()

    assert plan.held == []
    assert {item.point.pk for item in plan.remove} == {third.pk, oldest.pk}


def test_only_the_newest_intact_point_is_held_not_every_intact_one(four_days):
    newest, second, third, oldest = four_days
    damage(newest)  # the second is intact and kept by the count anyway: nothing more to hold

    plan = actions.plan_prune()

    assert plan.held == []
    assert {item.point.pk for item in plan.remove} == {third.pk, oldest.pk}
