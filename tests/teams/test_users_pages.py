"""The Users pages (administrators only) and My account (everyone signed in)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from accounts.models import Profile, profile_of
from accounts.roles import AUDITOR, RESTORE_OPERATOR
from audit.models import AuditEntry
from recovery.models import RestoreGrant
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter

pytestmark = pytest.mark.django_db


def test_an_administrator_creates_a_restore_operator_with_grants_and_sees_the_password_once(as_admin):
    tree = create_test_tree(create_test_vcenter(), ["Prod", "Branch"])
    group = protect_vms("Gold", [])
    response = as_admin.post(
        reverse("teams:user_new"),
        {
            "username": "erin",
            "email": "erin@example.com",
            "roles": [RESTORE_OPERATOR],
            "grant_groups": [group.pk],
            "grant_folders": [tree["Branch"].pk],
        },
    )
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    password = response.context["password"]
    assert password in response.content.decode()
    erin = User.objects.get(username="erin")
    assert erin.check_password(password) and profile_of(erin).must_change_password
    assert {g.scope for g in RestoreGrant.objects.filter(user=erin)} == {"group Gold", "folder DC1/Branch"}
    assert AuditEntry.objects.filter(action="grant.add", actor_name="alice").count() == 2
    # Never again: the user's page does not show it.
    assert password not in as_admin.get(reverse("teams:user", args=[erin.pk])).content.decode()


def test_grants_for_someone_who_is_not_a_restore_operator_are_refused(as_admin):
    tree = create_test_tree(create_test_vcenter(), ["Prod"])
    response = as_admin.post(
        reverse("teams:user_new"), {"username": "erin", "roles": [AUDITOR], "grant_folders": [tree["Prod"].pk]}
    )
    assert "Grants are for restore operators" in response.content.decode()
    assert not User.objects.filter(username="erin").exists()


def test_the_list_shows_roles_how_each_signs_in_and_the_last_sign_in(as_admin, helpdesk):
    Profile.objects.create(user=helpdesk, sign_in=Profile.SignIn.ENTRA)
    body = as_admin.get(reverse("teams:users")).content.decode()
    assert "bob" in body and RESTORE_OPERATOR in body and "Microsoft Entra ID" in body and "never" in body


def test_an_administrator_changes_roles_resets_and_disables(as_admin, helpdesk):
    url = reverse("teams:user", args=[helpdesk.pk])
    as_admin.post(reverse("teams:user_edit", args=[helpdesk.pk]), {"email": "b@example.com", "roles": [AUDITOR]})
    helpdesk.refresh_from_db()
    assert helpdesk.email == "b@example.com" and [g.name for g in helpdesk.groups.all()] == [AUDITOR]
    reset = as_admin.post(reverse("teams:user_reset_password", args=[helpdesk.pk]))
    helpdesk.refresh_from_db()
    assert helpdesk.check_password(reset.context["password"])
    assert as_admin.post(reverse("teams:user_disable", args=[helpdesk.pk]))["Location"] == url
    helpdesk.refresh_from_db()
    assert not helpdesk.is_active
    as_admin.post(reverse("teams:user_enable", args=[helpdesk.pk]))
    helpdesk.refresh_from_db()
    assert helpdesk.is_active
    actions = set(AuditEntry.objects.filter(actor_name="alice").values_list("action", flat=True))
    assert {"user.email", "user.roles", "user.password_reset", "user.disable", "user.enable"} <= actions


def test_a_grant_is_added_and_removed_on_the_user_page(as_admin, helpdesk):
    tree = create_test_tree(create_test_vcenter(), ["Prod"])
    as_admin.post(reverse("teams:user_grant_add", args=[helpdesk.pk]), {"folder": tree["Prod"].pk})
    grant = RestoreGrant.objects.get(user=helpdesk)
    page = as_admin.get(reverse("teams:user", args=[helpdesk.pk])).content.decode()
    assert "folder <strong>DC1/Prod</strong>" in page
    as_admin.post(reverse("teams:user_grant_remove", args=[helpdesk.pk, grant.pk]))
    assert not RestoreGrant.objects.filter(user=helpdesk).exists()


def test_a_directory_user_page_is_read_only_with_a_sentence(as_admin, helpdesk):
    Profile.objects.create(user=helpdesk, sign_in=Profile.SignIn.DIRECTORY, external_id="CN=bob,DC=corp")
    body = as_admin.get(reverse("teams:user", args=[helpdesk.pk])).content.decode()
    assert "its group mappings give" in body and "Reset password" not in body and "Add a grant" not in body
    as_admin.post(reverse("teams:user_edit", args=[helpdesk.pk]), {"email": "", "roles": [AUDITOR]})
    assert [g.name for g in helpdesk.groups.all()] == [RESTORE_OPERATOR]
    response = as_admin.post(reverse("teams:user_reset_password", args=[helpdesk.pk]), follow=True)
    assert "password is kept there" in response.content.decode()


@pytest.mark.parametrize("persona", ["as_helpdesk", "as_auditor"])
def test_only_administrators_reach_the_users_pages(request, persona, admin):
    client = request.getfixturevalue(persona)
    assert client.get(reverse("teams:users")).status_code == 403
    assert client.get(reverse("teams:user", args=[admin.pk])).status_code == 403
    assert client.post(reverse("teams:user_new"), {"username": "x", "roles": [AUDITOR]}).status_code == 403
    assert client.post(reverse("teams:user_disable", args=[admin.pk])).status_code == 403
    assert client.post(reverse("teams:user_reset_password", args=[admin.pk])).status_code == 403
    assert not User.objects.filter(username="x").exists()


def test_everyone_has_my_account_and_the_nav_links_fit_the_role(as_helpdesk, as_admin):
    body = as_helpdesk.get(reverse("teams:account")).content.decode()
    assert "My account" in body and RESTORE_OPERATOR in body and "Change my password" in body
    assert reverse("teams:users") not in body
    assert reverse("teams:users") in as_admin.get(reverse("teams:account")).content.decode()


def test_api_tokens_load_into_my_account_and_the_user_page(as_admin, helpdesk):
    mine = as_admin.get(reverse("teams:account")).content.decode()
    assert f'hx-get="{reverse("tokens:mine")}"' in mine
    theirs = as_admin.get(reverse("teams:user", args=[helpdesk.pk])).content.decode()
    assert f'hx-get="{reverse("tokens:of_user", args=[helpdesk.pk])}"' in theirs
