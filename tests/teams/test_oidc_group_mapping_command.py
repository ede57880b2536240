"""`manage.py group-mapping`: Entra ID groups and app roles (and directory groups) mapped to roles and grants
from the command line, audited, with one sentence for each mistake."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.roles import AUDITOR, RESTORE_OPERATOR
from audit.models import AuditEntry
from teams.models import GroupMapping
from tests.inventory.factories import create_test_tree, create_test_vcenter

pytestmark = pytest.mark.django_db
GROUP_ID = "3f2b8a9e-1c4d-4e5f-9a6b-7c8d9e0f1a2b"


def _run(*args: str) -> str:
    out = StringIO()
    call_command("group-mapping", *args, stdout=out)
    return out.getvalue()


def test_it_maps_an_entra_group_to_a_role_and_a_folder_grant():
    folder = create_test_tree(create_test_vcenter(), ["Branch"])["Branch"]
    out = _run("add", "--source", "entra", GROUP_ID, "--role", "restore-operator", "--grant-folder", folder.path)
    assert out == f"Mapped Microsoft Entra ID group {GROUP_ID}.\n"
    mapping = GroupMapping.objects.get(source="entra", external_group=GROUP_ID)
    assert mapping.role is not None and mapping.role.name == RESTORE_OPERATOR
    assert list(mapping.grant_folders.all()) == [folder]
    entry = AuditEntry.objects.get(action="entra.mapping_added")
    assert entry.actor_name == "command line" and entry.details["grant_folders"] == [folder.path]


def test_it_lists_mappings_as_json_and_removes_one():
    _run("add", "--source", "entra", "VMBackup.Audit", "--role", "Auditor")
    _run("add", "--source", "directory", "CN=Helpdesk,DC=corp", "--role", "restore-operator")
    rows = json.loads(_run("list", "--json"))
    assert [(r["source"], r["group"], r["role"]) for r in rows] == [
        ("directory", "CN=Helpdesk,DC=corp", RESTORE_OPERATOR),
        ("entra", "VMBackup.Audit", AUDITOR),
    ]
    assert "VMBackup.Audit" not in _run("list", "--source", "directory")
    assert _run("remove", "--source", "entra", "VMBackup.Audit") == "Removed the mapping of VMBackup.Audit.\n"
    assert AuditEntry.objects.filter(action="entra.mapping_removed").count() == 1
    with pytest.raises(CommandError, match="No entra mapping for vmbackup.audit"):
        _run("remove", "--source", "entra", "vmbackup.audit")  # app roles compare exactly


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--role", "owner"], "No role 'owner': use one of backup-administrator, restore-operator, auditor."),
        ([], "Give the group's members a role, grants, or both."),
        (["--grant-folder", "Nowhere"], "No folder Nowhere."),
        (["--grant-group", "Nothing"], "No protection group Nothing."),
    ],
)
def test_a_mistake_is_one_sentence_and_adds_nothing(args, sentence):
    with pytest.raises(CommandError) as refused:
        _run("add", "--source", "entra", GROUP_ID, *args)
    assert str(refused.value) == sentence
    assert not GroupMapping.objects.exists()


def test_a_group_mapped_twice_is_refused():
    _run("add", "--source", "entra", GROUP_ID, "--role", "auditor")
    with pytest.raises(CommandError, match="already has a mapping"):
        _run("add", "--source", "entra", GROUP_ID, "--role", "auditor")
