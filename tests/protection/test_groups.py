"""Protection groups: selection, the one-group rule, preview, policy validation, audit, pages, roles."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from inventory.models import VirtualMachine
from protection import actions
from protection.models import ProtectionGroup
from tests.factories.protection import POLICY
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    folders = create_test_tree(create_test_vcenter(), ["Prod", "Prod/Web", "Prod/DB", "Dev"])
    vms = {
        "web-01": create_test_vm(folders["Prod/Web"], "web-01", disks=2),
        "web-02": create_test_vm(folders["Prod/Web"], "web-02"),
        "db-01": create_test_vm(folders["Prod/DB"], "db-01"),
        "dev-01": create_test_vm(folders["Dev"], "dev-01"),
    }
    return folders, vms


def save(name, *, folders=(), vms=(), excluded=(), excluded_disks=(), user=None, **policy):
    selection = actions.Selection(
        folder_ids=[f.pk for f in folders],
        vm_ids=[v.pk for v in vms],
        excluded_vm_ids=[v.pk for v in excluded],
        excluded_disk_ids=[d.pk for d in excluded_disks],
    )
    return actions.save_group(
        user, group=None, name=name, description="", selection=selection, policy_values={**POLICY, **policy}
    )


def members(group) -> set[str]:
    return set(group.members.values_list("name", flat=True))


def test_a_folder_selection_covers_subfolders_and_excludes_what_is_excluded(tree, admin):
    folders, vms = tree
    group = save("Prod", folders=[folders["Prod"]], excluded=[vms["db-01"]], user=admin)
    assert members(group) == {"web-01", "web-02"}
    entry = AuditEntry.objects.get(action="protection.group_create")
    assert entry.actor_name == "alice" and entry.details["folders"] == ["DC1/Prod"]
    assert entry.details["excluded_vms"] == ["db-01"] and entry.details["schedule"] == "daily 22:00"


def test_a_vm_created_later_in_the_folder_is_protected_without_any_action(tree):
    folders, _ = tree
    group = save("Prod", folders=[folders["Prod"]])
    from protection.membership import refresh_membership

    new = create_test_vm(folders["Prod/Web"], "web-03")
    refresh_membership()  # what every sync and the live watcher do after writing VMs
    new.refresh_from_db()
    assert new.protection_group == group


def test_the_one_group_rule_holds_across_folder_and_vm_selections(tree):
    folders, vms = tree
    save("Prod", folders=[folders["Prod"]])
    with pytest.raises(actions.SelectionConflict, match="“Prod”"):
        save("Web", folders=[folders["Prod/Web"]])  # a subfolder of another group's folder
    with pytest.raises(actions.SelectionConflict, match="web-01 is already protected by group “Prod”"):
        save("Single", vms=[vms["web-01"]])
    dev = save("Dev", vms=[vms["dev-01"]])
    with pytest.raises(actions.SelectionConflict, match="dev-01 is already protected by group “Dev”"):
        save("Everything", folders=[folders[""]])
    assert set(ProtectionGroup.objects.values_list("name", flat=True)) == {"Prod", "Dev"}
    assert members(dev) == {"dev-01"}


def test_a_vm_excluded_from_one_group_may_join_another(tree):
    folders, vms = tree
    save("Prod", folders=[folders["Prod"]], excluded=[vms["db-01"]])
    db = save("DB special", vms=[vms["db-01"]])
    assert members(db) == {"db-01"}


def test_the_preview_lists_vms_and_disks_with_exclusions(tree):
    folders, vms = tree
    disk = vms["web-01"].disks.order_by("key").last()
    preview = actions.preview(
        actions.Selection(
            folder_ids=[folders["Prod/Web"].pk], excluded_disk_ids=[disk.pk], excluded_vm_ids=[vms["web-02"].pk]
        )
    )
    (row,) = preview.rows
    assert row.vm.name == "web-01" and row.reason == "in folder DC1/Prod/Web"
    assert [d.label for d in row.disks] == ["Hard disk 1"]
    assert [(d.label, why) for d, why in row.skipped_disks] == [("Hard disk 2", "excluded")]
    assert [vm.name for vm in preview.excluded] == ["web-02"] and not preview.conflicts


def test_changing_a_group_audits_what_changed(tree, admin):
    folders, _ = tree
    group = save("Prod", folders=[folders["Prod"]])
    actions.save_group(
        admin,
        group=group,
        name="Prod",
        description="now nightly",
        selection=actions.Selection.of(group),
        policy_values={**POLICY, "schedule": "daily 01:30"},
    )
    entry = AuditEntry.objects.get(action="protection.group_update")
    assert entry.details == {"description": ["", "now nightly"], "schedule": ["daily 22:00", "daily 01:30"]}


def test_deleting_a_group_unprotects_its_vms_and_keeps_them(tree, admin):
    folders, _ = tree
    group = save("Prod", folders=[folders["Prod"]])
    actions.delete_group(admin, group)
    assert VirtualMachine.objects.filter(protection_group__isnull=False).count() == 0
    assert VirtualMachine.objects.count() == 4
    assert AuditEntry.objects.filter(action="protection.group_delete", actor_name="alice").exists()


def form_post(folders, **overrides) -> dict:
    data = {
        "name": "Web",
        "description": "",
        "folders": [folders["Prod/Web"].pk],
        **{f"policy-{k}": ("" if v is None else v) for k, v in POLICY.items() if v is not False},
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("policy-schedule", "daily 25:00", "is not a time of day"),
        ("policy-schedule", "sometimes", "is not a schedule"),
        ("policy-local_days", "0", "1 to 448 days"),
        ("policy-local_days", "449", "1 to 448 days"),
        ("policy-parallelism", "0", "1 to 16"),
        ("policy-timezone", "Mars/Base", "Unknown time zone"),
        ("policy-window_hours", "30", "1 to 24 hours"),
        ("policy-vault_daily", "-1", "greater than or equal to 0"),
    ],
)
def test_invalid_policy_values_get_field_errors(as_admin, tree, field, value, message):
    folders, _ = tree
    response = as_admin.post(reverse("protection:group_create"), form_post(folders, **{field: value}))
    assert response.status_code == 200
    errors = response.context["policy_form"].errors[field.removeprefix("policy-")]
    assert message in " ".join(errors)
    assert not ProtectionGroup.objects.exists()


def test_keeping_nothing_locally_is_refused(as_admin, tree):
    folders, _ = tree
    response = as_admin.post(
        reverse("protection:group_create"), form_post(folders, **{"policy-local_days": "", "policy-local_count": ""})
    )
    assert "a number of days, a number of points, or both" in " ".join(
        response.context["policy_form"].errors["local_days"]
    )


def test_the_create_page_saves_a_group_and_shows_the_conflict_message(as_admin, tree):
    folders, _ = tree
    response = as_admin.post(reverse("protection:group_create"), form_post(folders))
    group = ProtectionGroup.objects.get(name="Web")
    assert response.status_code == 302 and response.url == reverse("protection:group", args=[group.pk])
    response = as_admin.post(reverse("protection:group_create"), form_post(folders, name="Again"))
    assert "“Web”" in " ".join(response.context["form"].non_field_errors())


def test_the_live_preview_fragment(as_admin, tree):
    folders, _ = tree
    response = as_admin.post(
        reverse("protection:group_preview"), {"folders": [folders["Prod"].pk]}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="preview"') and "3 VMs" in body and "db-01" in body


def test_the_vm_picker_finds_vms_and_keeps_the_chosen_ones(as_admin, tree):
    _, vms = tree
    response = as_admin.get(reverse("protection:vm_picker"), {"vm_search": "web", "vms": [vms["db-01"].pk]})
    body = response.content.decode()
    assert f'value="{vms["db-01"].pk}" checked' in body
    for name in ("web-01", "web-02"):
        assert f'value="{vms[name].pk}">' in body
    assert "dev-01" not in body


def test_pause_resume_and_the_list_page(as_admin, tree):
    folders, _ = tree
    group = save("Prod", folders=[folders["Prod"]])
    as_admin.post(reverse("protection:group_pause", args=[group.pk]), {"paused": "1"})
    group.refresh_from_db()
    assert group.paused
    body = as_admin.get(reverse("protection:index")).content.decode()
    assert "paused" in body and "3 VMs" in body
    as_admin.post(reverse("protection:group_pause", args=[group.pk]), {"paused": "0"})
    group.refresh_from_db()
    assert not group.paused
    assert AuditEntry.objects.filter(action__in=["protection.group_pause", "protection.group_resume"]).count() == 2


def test_helpdesk_cannot_see_or_change_protection_and_auditors_only_read(as_helpdesk, as_auditor, tree):
    folders, _ = tree
    group = save("Prod", folders=[folders["Prod"]])
    for url in (reverse("protection:index"), reverse("protection:group", args=[group.pk])):
        assert as_helpdesk.get(url).status_code == 403
        assert as_auditor.get(url).status_code == 200
    for client in (as_helpdesk, as_auditor):
        assert client.post(reverse("protection:group_create"), form_post(folders, name="X")).status_code == 403
        assert client.post(reverse("protection:group_pause", args=[group.pk]), {"paused": "1"}).status_code == 403
        assert client.post(reverse("protection:group_delete", args=[group.pk])).status_code == 403
        assert client.post(reverse("protection:group_backup_now", args=[group.pk])).status_code == 403
    group.refresh_from_db()
    assert not group.paused and ProtectionGroup.objects.count() == 1
