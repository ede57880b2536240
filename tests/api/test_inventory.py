"""Inventory and protection groups through the API: vCenters without passwords, the VM list's
filters (those of the inventory page), a VM with its disks and group, groups with their policy."""

from __future__ import annotations

import pytest
from django.utils import timezone

from inventory.models import VirtualMachine
from tests.inventory.factories import create_test_vcenter

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [vm["name"] for vm in response.json()["results"]]


def test_vcenters_are_listed_without_any_password(api_auditor, inventory):
    response = api_auditor.get("/api/v1/vcenters/")
    [vc] = response.json()["results"]
    assert vc["name"] == "vc1" and vc["vm_count"] == 5 and vc["insecure"] is False
    body = response.content.decode()
    assert "s3cret-Passw0rd" not in body and "password" not in body
    assert inventory["vc"].password_encrypted not in body
    assert api_auditor.get(f"/api/v1/vcenters/{vc['id']}/").json()["name"] == "vc1"


def test_vm_list_filters_like_the_inventory_page(api_auditor, inventory):
    folders, vms = inventory["folders"], inventory["vms"]
    VirtualMachine.objects.filter(pk=vms["dev-01"].pk).update(removed_at=timezone.now())
    other = create_test_vcenter("vc2")
    get = api_auditor.get

    assert names(get("/api/v1/vms/")) == ["db-01", "dev-02", "web-01", "web-02"]
    assert names(get("/api/v1/vms/", {"search": "web"})) == ["web-01", "web-02"]
    assert names(get("/api/v1/vms/", {"search": vms["db-01"].instance_uuid})) == ["db-01"]
    assert names(get("/api/v1/vms/", {"folder": folders["Prod"].pk})) == ["db-01", "web-01", "web-02"]
    assert names(get("/api/v1/vms/", {"folder_path": "DC1/Prod/Web"})) == ["web-01", "web-02"]
    assert names(get("/api/v1/vms/", {"vcenter": inventory["vc"].pk, "power_state": "poweredOff"})) == ["web-02"]
    assert names(get("/api/v1/vms/", {"vcenter": other.pk})) == []
    assert names(get("/api/v1/vms/", {"protection": "protected"})) == ["db-01", "web-01", "web-02"]
    assert names(get("/api/v1/vms/", {"protection": "unprotected"})) == []
    assert names(get("/api/v1/vms/", {"protection": "do_not_protect"})) == ["dev-02"]
    assert names(get("/api/v1/vms/", {"protection": "removed"})) == ["dev-01"]
    assert names(get("/api/v1/vms/", {"include_removed": "true", "folder_path": "DC1/Dev"})) == ["dev-01", "dev-02"]
    assert names(get("/api/v1/vms/", {"sort": "-name", "search": "web"})) == ["web-02", "web-01"]


def test_bad_filter_values_are_400_with_the_field_named(api_auditor, inventory):
    for query, field in [
        ({"protection": "maybe"}, "protection"),
        ({"power_state": "on"}, "power_state"),
        ({"folder": "x"}, "folder"),
        ({"vcenter": str(2**70)}, "vcenter"),
        ({"search": "a\x00b"}, "search"),
    ]:
        response = api_auditor.get("/api/v1/vms/", query)
        assert response.status_code == 400 and field in response.json(), (query, response.content)


def test_vm_list_pages_by_100_and_up_to_1000(api_auditor, inventory):
    folder = inventory["folders"]["Dev"]
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            vcenter=inventory["vc"],
            instance_uuid=f"uuid-{n}",
            moref=f"vm-x{n}",
            name=f"zz-{n:03}",
            folder=folder,
            path=f"{folder.path}/zz-{n:03}",
        )
        for n in range(1000)
    )
    body = api_auditor.get("/api/v1/vms/").json()
    assert body["count"] == 1005 and len(body["results"]) == 100 and body["previous"] is None
    assert body["next"].endswith("/api/v1/vms/?page=2")
    assert len(api_auditor.get("/api/v1/vms/", {"page_size": 5000}).json()["results"]) == 1000
    body = api_auditor.get("/api/v1/vms/", {"page_size": 2, "page": 2}).json()
    assert [vm["name"] for vm in body["results"]] == ["dev-02", "web-01"]
    assert api_auditor.get("/api/v1/vms/", {"page": 999}).status_code == 404


def test_a_vm_comes_with_its_disks_and_group(api_auditor, inventory):
    vm = inventory["vms"]["web-01"]
    body = api_auditor.get(f"/api/v1/vms/{vm.pk}/").json()
    assert body["name"] == "web-01" and body["path"] == "DC1/Prod/Web/web-01"
    assert body["protection_group"] == {"id": inventory["group"].pk, "name": "Prod"}
    assert body["folder"] == {"id": inventory["folders"]["Prod/Web"].pk, "path": "DC1/Prod/Web"}
    assert [(d["key"], d["label"], d["capacity_bytes"], d["protectable"]) for d in body["disks"]] == [
        (2000, "Hard disk 1", 1024**3, True),
        (2001, "Hard disk 2", 2 * 1024**3, True),
    ]
    assert api_auditor.get("/api/v1/vms/999999/").status_code == 404
    assert api_auditor.get("/api/v1/vms/abc/").status_code == 404


def test_groups_come_with_their_policy_selection_and_members(api_auditor, inventory):
    group = inventory["group"]
    [row] = api_auditor.get("/api/v1/groups/").json()["results"]
    assert row["name"] == "Prod" and row["member_count"] == 3 and row["next_run"]
    assert row["policy"]["schedule"] == "daily 22:00" and row["policy"]["local_days"] == 14
    assert "22:00" in row["policy"]["schedule_description"]
    body = api_auditor.get(f"/api/v1/groups/{group.pk}/").json()
    assert body["folders"] == [{"id": inventory["folders"]["Prod"].pk, "path": "DC1/Prod"}]
    assert [m["name"] for m in body["members"]] == ["db-01", "web-01", "web-02"]
    assert body["vms"] == [] and body["excluded_vms"] == [] and body["excluded_disks"] == []
