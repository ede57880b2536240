"""Directory and Entra ID users get exactly what their groups' mappings give, again at each sign-in."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.models import Profile
from accounts.roles import AUDITOR, RESTORE_OPERATOR
from audit.models import AuditEntry
from inventory.models import Folder
from recovery.models import RestoreGrant
from teams.mapping import apply_external_groups
from teams.models import GroupMapping
from tests.inventory.factories import create_test_tree, create_test_vcenter

pytestmark = pytest.mark.django_db

HELPDESK_DN = "CN=Helpdesk,OU=Groups,DC=corp,DC=example"


@pytest.fixture
def helpdesk_mapping(django_user_model):
    mapping = GroupMapping.objects.create(
        source=GroupMapping.Source.DIRECTORY, external_group=HELPDESK_DN, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    return mapping


def test_a_member_of_a_mapped_group_gets_its_role_and_grants(django_user_model, helpdesk_mapping):
    folder = _folder()
    helpdesk_mapping.grant_folders.add(folder)
    user = django_user_model.objects.create_user("dana")
    result = apply_external_groups(user, "directory", ["cn=helpdesk,ou=groups,dc=corp,dc=example"])
    assert result.roles == {RESTORE_OPERATOR}
    assert list(user.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
    assert [g.folder_id for g in RestoreGrant.objects.filter(user=user)] == [folder.pk]
    assert user.profile.sign_in == Profile.SignIn.DIRECTORY
    assert AuditEntry.objects.filter(action="user.groups_applied").count() == 1


def test_leaving_the_group_takes_the_role_and_grants_away(django_user_model, helpdesk_mapping):
    helpdesk_mapping.grant_folders.add(_folder())
    user = django_user_model.objects.create_user("dana")
    apply_external_groups(user, "directory", [HELPDESK_DN])
    result = apply_external_groups(user, "directory", ["CN=Sales,DC=corp,DC=example"])
    assert result.empty
    assert not user.groups.exists()
    assert not RestoreGrant.objects.filter(user=user).exists()


def test_signing_in_again_unchanged_writes_no_audit_row(django_user_model, helpdesk_mapping):
    user = django_user_model.objects.create_user("dana")
    apply_external_groups(user, "directory", [HELPDESK_DN])
    apply_external_groups(user, "directory", [HELPDESK_DN])
    assert AuditEntry.objects.filter(action="user.groups_applied").count() == 1


def test_entra_group_ids_are_compared_exactly(django_user_model):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group="Backup.Audit", role=Group.objects.get(name=AUDITOR)
    )
    user = django_user_model.objects.create_user("erin")
    assert apply_external_groups(user, "entra", ["backup.audit"]).empty
    assert apply_external_groups(user, "entra", ["Backup.Audit"]).roles == {AUDITOR}


def _folder() -> Folder:
    return create_test_tree(create_test_vcenter(), ["Helpdesk VMs"])["Helpdesk VMs"]
