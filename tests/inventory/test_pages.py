"""Inventory pages: tree, list with search/filters/sorting/pagination, VM detail; escaping; roles."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from protection.membership import refresh_membership
from protection.models import ProtectionGroup
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db
XSS = "<script>alert(1)</script>"


@pytest.fixture
def inventory():
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod", "Prod/Web", "Dev"])
    vms = {
        "web-01": create_test_vm(folders["Prod/Web"], "web-01"),
        "web-02": create_test_vm(folders["Prod/Web"], "web-02", power_state="poweredOff"),
        "db-01": create_test_vm(folders["Prod"], "db-01", disks=2),
        "xss": create_test_vm(folders["Dev"], XSS),
        "ru": create_test_vm(folders["Dev"], "Сервер-Ω 数据库"),
        "root": create_test_vm(folders[""], "jump"),
    }
    return vc, folders, vms


def names(response) -> list[str]:
    return [vm.name for vm in response.context["vms"]]


def test_the_tree_counts_vms_in_each_folder_and_below(as_admin, inventory):
    response = as_admin.get(reverse("inventory:index"))
    (entry,) = response.context["tree"]
    (dc,) = entry["datacenters"]
    assert dc["root"]["count"] == 6
    counts = {node["name"]: node["count"] for node in dc["root"]["children"]}
    assert counts == {"Dev": 2, "Prod": 3}
    prod = next(node for node in dc["root"]["children"] if node["name"] == "Prod")
    assert [(n["name"], n["count"]) for n in prod["children"]] == [("Web", 2)]


def test_the_tree_shows_nested_folders_with_counts_and_marks_the_selected_one(as_admin, inventory):
    _, folders, _ = inventory
    folders["Dev"].name = XSS
    folders["Dev"].save()
    html = as_admin.get(reverse("inventory:index"), {"folder": folders["Prod/Web"].pk}).content.decode()
    prod, web = folders["Prod"].pk, folders["Prod/Web"].pk
    assert (
        f'<li><a href="?folder={prod}">Prod</a> <span class="count">3</span>'
        f'<ul><li><a href="?folder={web}" class="current">Web</a> <span class="count">2</span></li></ul></li>'
    ) in html
    assert XSS not in html and '&lt;script&gt;alert(1)&lt;/script&gt;</a> <span class="count">2</span>' in html


def test_a_folder_filter_includes_subfolders(as_admin, inventory):
    _, folders, _ = inventory
    response = as_admin.get(reverse("inventory:index"), {"folder": folders["Prod"].pk})
    assert sorted(names(response)) == ["db-01", "web-01", "web-02"]


def test_a_hostile_vm_name_renders_escaped_and_is_found_by_search(as_admin, inventory):
    response = as_admin.get(reverse("inventory:index"), {"q": "<script>"})
    assert names(response) == [XSS]
    body = response.content.decode()
    assert XSS not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    detail = as_admin.get(reverse("inventory:vm", args=[inventory[2]["xss"].pk])).content.decode()
    assert XSS not in detail


def test_non_latin_names_are_found_by_search(as_admin, inventory):
    assert names(as_admin.get(reverse("inventory:index"), {"q": "сервер"})) == ["Сервер-Ω 数据库"]
    assert names(as_admin.get(reverse("inventory:index"), {"q": "数据"})) == ["Сервер-Ω 数据库"]


def test_power_and_protection_filters(as_admin, inventory):
    _, folders, vms = inventory
    assert names(as_admin.get(reverse("inventory:index"), {"power": "poweredOff"})) == ["web-02"]
    group = ProtectionGroup.objects.create(name="Web")
    group.folders.add(folders["Prod/Web"])
    refresh_membership()
    assert sorted(names(as_admin.get(reverse("inventory:index"), {"protection": "protected"}))) == ["web-01", "web-02"]
    unprotected = names(as_admin.get(reverse("inventory:index"), {"protection": "unprotected"}))
    assert "web-01" not in unprotected and len(unprotected) == 4


def test_sorting_by_name_both_ways(as_admin, inventory):
    ascending = names(as_admin.get(reverse("inventory:index"), {"sort": "name"}))
    assert ascending == sorted(ascending)
    assert names(as_admin.get(reverse("inventory:index"), {"sort": "-name"})) == ascending[::-1]


def test_the_list_is_paginated(as_admin, inventory):
    _, folders, _ = inventory
    for n in range(60):
        create_test_vm(folders["Dev"], f"bulk-{n:02d}", disks=0)
    first = as_admin.get(reverse("inventory:index"))
    assert len(names(first)) == 50 and first.context["page"].paginator.count == 66
    assert len(names(as_admin.get(reverse("inventory:index"), {"page": 2}))) == 16


def test_an_htmx_filter_request_gets_only_the_list(as_admin, inventory):
    response = as_admin.get(reverse("inventory:index"), {"q": "web"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="vm-list">')
    assert "<nav" not in body and "web-01" in body
    assert "HX-Request" in response["Vary"]


def test_removed_vms_are_hidden_unless_asked_for(as_admin, inventory):
    from django.utils import timezone

    vm = inventory[2]["web-01"]
    vm.removed_at = timezone.now()
    vm.save()
    assert "web-01" not in names(as_admin.get(reverse("inventory:index")))
    assert "web-01" in names(as_admin.get(reverse("inventory:index"), {"removed": "on"}))


def test_the_vm_page_lists_disks_and_protection(as_admin, inventory):
    vm = inventory[2]["db-01"]
    body = as_admin.get(reverse("inventory:vm", args=[vm.pk])).content.decode()
    assert "Hard disk 2" in body and vm.instance_uuid in body and "Not protected" in body


def test_an_admin_marks_a_vm_do_not_protect_and_it_leaves_its_group(as_admin, inventory):
    _, folders, vms = inventory
    group = ProtectionGroup.objects.create(name="Web")
    group.folders.add(folders["Prod/Web"])
    refresh_membership()
    response = as_admin.post(reverse("inventory:vm_do_not_protect", args=[vms["web-01"].pk]), {"value": "1"})
    assert response.status_code == 302
    vms["web-01"].refresh_from_db()
    assert vms["web-01"].do_not_protect and vms["web-01"].protection_group is None
    assert AuditEntry.objects.filter(action="vm.do_not_protect", actor_name="alice").exists()
    assert AuditEntry.objects.filter(action="protection.vm_left", target_id=str(vms["web-01"].pk)).exists()


def test_auditors_see_the_inventory_and_helpdesk_does_not_and_neither_changes_it(as_helpdesk, as_auditor, inventory):
    vm = inventory[2]["web-01"]
    # Helpdesk's list of VMs is the Recovery page (their granted VMs); the inventory is the estate's.
    for client, status in ((as_helpdesk, 403), (as_auditor, 200)):
        assert client.get(reverse("inventory:index")).status_code == status
        assert client.get(reverse("inventory:vm", args=[vm.pk])).status_code == status
        assert client.post(reverse("inventory:vm_do_not_protect", args=[vm.pk]), {"value": "1"}).status_code == 403
    vm.refresh_from_db()
    assert not vm.do_not_protect


def test_someone_without_a_role_sees_no_inventory(as_norole, inventory):
    assert as_norole.get(reverse("inventory:index")).status_code == 403
    assert as_norole.get(reverse("inventory:index"), headers={"HX-Request": "true"}).status_code == 403
    assert as_norole.get(reverse("inventory:vm", args=[inventory[2]["web-01"].pk])).status_code == 403
