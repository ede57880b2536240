"""A group grant covers the points a VM got while it was in that group, not the ones it got after
moving to another group; a folder grant covers every point of the VMs in that folder's subtree;
administrators and auditors see every point. Through `recovery.access`, the Recovery pages and the API."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from recovery import access
from recovery.models import RestoreGrant
from tests.factories.people import token_client
from tests.inventory.factories import create_test_vm
from tests.scope.conftest import World


def _ids(points: Any) -> set[str]:
    return {str(pk) for pk in points.values_list("pk", flat=True)}


def test_bob_sees_the_point_mover_got_in_group_g_but_not_the_one_it_got_in_group_h(world: World, helpdesk: Any) -> None:
    g, h = world.points["g"], world.points["h"]
    assert access.can_browse_point(helpdesk, g) and access.can_download_point(helpdesk, g)
    assert not access.can_browse_point(helpdesk, h) and not access.can_download_point(helpdesk, h)
    mine = _ids(access.visible_points(helpdesk))
    assert mine == {str(world.points[key].pk) for key in ("g", "stay", "branch")}
    # mover stays visible (for its Group-G point); fin-01 and ghost-01 do not exist for bob.
    assert set(access.visible_vms(helpdesk).values_list("name", flat=True)) == {"mover", "stay-01", "branch-01"}


def test_the_recovery_pages_count_and_list_only_bobs_points(world: World, as_helpdesk: Any, as_admin: Any) -> None:
    mover = world.vms["mover"]
    counts = {vm.name: vm.point_count for vm in as_helpdesk.get(reverse("recovery:index")).context["vms"]}
    assert counts == {"mover": 1, "stay-01": 1, "branch-01": 1}
    assert {vm.name: vm.point_count for vm in as_admin.get(reverse("recovery:index")).context["vms"]}["mover"] == 2
    listed = as_helpdesk.get(reverse("recovery:vm", args=[mover.pk])).context["points"]
    assert [p.pk for p in listed] == [world.points["g"].pk]
    assert as_helpdesk.get(reverse("recovery:point", args=[world.points["h"].pk])).status_code == 404


def test_the_api_lists_and_opens_only_bobs_points(world: World, helpdesk: Any) -> None:
    api = token_client(helpdesk)
    body = api.get("/api/v1/points/", {"vm": world.vms["mover"].pk}).json()
    assert [p["id"] for p in body["results"]] == [str(world.points["g"].pk)]
    assert api.get(f"/api/v1/points/{world.points['h'].pk}/").status_code == 404
    assert api.get(f"/api/v1/points/{world.points['g'].pk}/").status_code == 200


def test_a_folder_grant_covers_every_point_of_the_vms_below_the_folder(world: World, helpdesk: Any) -> None:
    # branch-01's point belongs to no group; the folder grant covers it, and a VM that arrives in
    # the folder later (here: a new one) is covered too.
    assert access.can_browse_point(helpdesk, world.points["branch"])
    newcomer = create_test_vm(world.vms["branch-01"].folder, "branch-02")
    assert access.can_browse(helpdesk, newcomer)
    RestoreGrant.objects.filter(user=helpdesk, folder__isnull=False).delete()
    assert not access.can_browse_point(helpdesk, world.points["branch"])
    assert not access.can_browse(helpdesk, newcomer)


def test_revoking_the_group_grant_hides_its_points_at_once(world: World, helpdesk: Any) -> None:
    world.grant.delete()
    assert not access.can_browse_point(helpdesk, world.points["g"])
    assert "mover" not in set(access.visible_vms(helpdesk).values_list("name", flat=True))


def test_administrators_and_auditors_see_every_point(world: World, admin: Any, auditor: Any) -> None:
    every = {str(p.pk) for p in world.points.values()}
    assert _ids(access.visible_points(admin)) == every == _ids(access.visible_points(auditor))
    assert access.can_browse_point(admin, world.points["h"])
    # Auditors list points but do not open them (no recovery.browse_recoverypoints), as before.
    assert not access.can_browse_point(auditor, world.points["h"])


def test_someone_without_a_role_sees_no_point(world: World, norole: Any) -> None:
    RestoreGrant.objects.create(user=norole, group=world.groups["G"])  # a grant alone opens nothing
    assert not access.visible_points(norole).exists() and not access.visible_vms(norole).exists()


def test_restores_are_seen_by_who_asked_for_them_unless_one_sees_everything(
    world: World, helpdesk: Any, admin: Any, auditor: Any
) -> None:
    assert list(access.visible_restores(helpdesk)) == [world.restores["bob"]]
    assert set(access.visible_restores(admin)) == set(world.restores.values()) == set(access.visible_restores(auditor))
