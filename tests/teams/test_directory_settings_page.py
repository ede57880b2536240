"""The Directory settings page against a real slapd over LDAPS: the test (bind, search, one user's
groups and roles), save only after it passes, one sentence for each failure with nothing saved, the
write-only bind password, and the group mappings."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils.html import escape

from accounts.roles import RESTORE_OPERATOR
from audit.models import AuditEntry
from recovery.models import RestoreGrant
from teams.models import DirectoryConfig, GroupMapping
from tests.inventory.factories import create_test_tree, create_test_vcenter
from tools.ldap_server import GROUPS, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn, password_of

pytestmark = pytest.mark.django_db

URL = "/settings/directory/"


def fields(slapd: Slapd, **changes: Any) -> dict[str, Any]:
    return {
        "server_uri": slapd.uri,
        "ca_file": str(slapd.ca_file),
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": "ou=people,dc=corp,dc=example",
        "user_search_filter": "(uid=%(user)s)",
        "group_search_base": GROUPS,
        "group_type": "group_of_names",
        "enabled": "on",
        "test_user": "dana",
        **changes,
    }


@pytest.fixture
def helpdesk_mapping(db: Any) -> GroupMapping:
    return GroupMapping.objects.create(
        source=GroupMapping.Source.DIRECTORY,
        external_group=group_dn("Helpdesk"),
        role=Group.objects.get(name=RESTORE_OPERATOR),
    )


def test_only_administrators_open_the_page(as_admin, as_helpdesk, as_auditor, as_norole):
    assert as_admin.get(URL).status_code == 200
    for client in (as_helpdesk, as_auditor, as_norole):
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"test": "1"}).status_code == 403


def test_the_test_shows_the_users_groups_and_roles_and_saves_nothing(as_admin, slapd, helpdesk_mapping):
    response = as_admin.post(URL, {**fields(slapd), "test": "1"})
    page = response.content.decode()
    assert "Test passed" in page
    assert "uid=dana,ou=people,dc=corp,dc=example" in page
    assert group_dn("Helpdesk") in page
    assert f"this user gets: {RESTORE_OPERATOR}" in page
    assert not DirectoryConfig.objects.exists()


def test_the_test_says_when_the_user_would_be_refused(as_admin, slapd, helpdesk_mapping):
    page = as_admin.post(URL, {**fields(slapd, test_user="nora"), "test": "1"}).content.decode()
    assert "would be refused" in page


def test_save_after_a_passing_test_keeps_the_password_encrypted_and_never_shows_it(as_admin, slapd):
    response = as_admin.post(URL, {**fields(slapd), "save": "1"})
    assert response.status_code == 302
    config = DirectoryConfig.objects.get()
    assert config.enabled and config.server_uri == slapd.uri
    assert config.bind_password == SERVICE_PASSWORD
    assert SERVICE_PASSWORD not in config.bind_password_encrypted
    entry = AuditEntry.objects.get(action="directory.configured")
    assert entry.details["bind_password_changed"] is True
    assert SERVICE_PASSWORD not in str(entry.details)
    assert SERVICE_PASSWORD not in as_admin.get(URL).content.decode()
    # Blank keeps the stored password when only the search settings change.
    again = as_admin.post(URL, {**fields(slapd, bind_password="", user_search_base="ou=people,dc=corp,dc=example")})
    assert SERVICE_PASSWORD not in again.content.decode()


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({"bind_password": "wrong"}, "The directory refused the bind account"),
        ({"server_uri": "ldaps://127.0.0.1:9"}, "could not be reached"),
        ({"user_search_base": "ou=nobody,dc=corp,dc=example"}, "does not exist in the directory"),
        ({"test_user": "zoe"}, "no user matches 'zoe'"),
        ({"server_uri": "ldap://127.0.0.1:389"}, "Plain ldap:// would send passwords in clear"),
        ({"ca_file": "/nonexistent/ca.pem"}, "does not exist on this server"),
    ],
)
def test_a_failing_test_says_why_in_one_sentence_and_saves_nothing(as_admin, slapd, changes, sentence):
    response = as_admin.post(URL, {**fields(slapd, **changes), "save": "1"})
    assert response.status_code == 200
    assert escape(sentence) in response.content.decode()
    assert not DirectoryConfig.objects.exists()
    assert not AuditEntry.objects.filter(action="directory.configured").exists()


def test_a_certificate_from_another_ca_is_named_as_not_trusted(as_admin, slapd, other_ca):
    response = as_admin.post(URL, {**fields(slapd, ca_file=str(other_ca.cert_file)), "save": "1"})
    page = response.content.decode()
    assert "is not trusted" in page
    assert str(other_ca.cert_file) in page
    assert not DirectoryConfig.objects.exists()


def test_starttls_with_another_ca_fails_with_a_sentence(as_admin, slapd, other_ca):
    changes = {"server_uri": slapd.starttls_uri, "start_tls": "on", "ca_file": str(other_ca.cert_file)}
    page = as_admin.post(URL, {**fields(slapd, **changes), "test": "1"}).content.decode()
    assert "StartTLS with 127.0.0.1" in page


def test_a_new_server_needs_the_bind_password_typed_again(as_admin, slapd):
    assert as_admin.post(URL, {**fields(slapd), "save": "1"}).status_code == 302
    changes = {"server_uri": slapd.starttls_uri, "start_tls": "on", "bind_password": ""}
    page = as_admin.post(URL, {**fields(slapd, **changes), "save": "1"}).content.decode()
    assert "Enter the bind password again" in page
    assert DirectoryConfig.objects.get().server_uri == slapd.uri


def test_turning_directory_sign_in_off_needs_no_test(as_admin, slapd):
    as_admin.post(URL, {**fields(slapd), "save": "1"})
    slapd_down = {"server_uri": "ldaps://127.0.0.1:9"}
    assert "could not be reached" in as_admin.post(URL, {**fields(slapd, **slapd_down), "test": "1"}).content.decode()
    assert as_admin.post(URL + "disable/").status_code == 302
    assert not DirectoryConfig.objects.get().enabled
    assert AuditEntry.objects.filter(action="directory.disabled").exists()


def test_a_mapping_added_on_the_page_gives_the_role_at_the_next_sign_in(as_admin, slapd, redis_conn):
    assert as_admin.post(URL, {**fields(slapd), "save": "1"}).status_code == 302
    role = Group.objects.get(name=RESTORE_OPERATOR)
    response = as_admin.post(URL + "mappings/", {"external_group": group_dn("Helpdesk"), "role": role.pk})
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action="directory.mapping_added").exists()
    assert Client().post("/login/", {"username": "dana", "password": password_of("dana")}).status_code == 302

    mapping = GroupMapping.objects.get()
    assert as_admin.post(URL + f"mappings/{mapping.pk}/remove/").status_code == 302
    assert AuditEntry.objects.filter(action="directory.mapping_removed").exists()
    refused = Client().post("/login/", {"username": "dana", "password": password_of("dana")})
    assert "no group that has a role here" in refused.content.decode()


def test_a_mapping_needs_a_role_or_grants_and_one_per_group(as_admin, helpdesk_mapping):
    empty = as_admin.post(URL + "mappings/", {"external_group": "cn=Sales,dc=corp,dc=example"})
    assert escape("Give the group's members a role, grants, or both.") in empty.content.decode()
    role = Group.objects.get(name=RESTORE_OPERATOR)
    twice = as_admin.post(URL + "mappings/", {"external_group": group_dn("Helpdesk").upper(), "role": role.pk})
    assert "already has a mapping" in twice.content.decode()
    assert GroupMapping.objects.count() == 1


def test_settings_from_the_environment_sign_in_and_the_page_only_tests_them(as_admin, slapd, settings, redis_conn):
    settings.LDAP_ENVIRONMENT = {
        "server_uri": slapd.uri,
        "ca_file": str(slapd.ca_file),
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": "ou=people,dc=corp,dc=example",
        "user_search_filter": "(uid=%(user)s)",
        "group_search_base": GROUPS,
        "group_type": "group_of_names",
    }
    GroupMapping.objects.create(
        source=GroupMapping.Source.DIRECTORY,
        external_group=group_dn("Helpdesk"),
        role=Group.objects.get(name=RESTORE_OPERATOR),
    )
    page = as_admin.get(URL).content.decode()
    assert "Configured by the environment" in page
    assert SERVICE_PASSWORD not in page
    tested = as_admin.post(URL, {"test_user": "dana", "save": "1"}).content.decode()
    assert "Test passed" in tested
    assert not DirectoryConfig.objects.exists()
    assert Client().post("/login/", {"username": "dana", "password": password_of("dana")}).status_code == 302


def test_a_mapping_with_a_folder_grant_gives_the_grant_at_sign_in(as_admin, slapd, redis_conn, django_user_model):
    folder = create_test_tree(create_test_vcenter(), ["Helpdesk VMs"])["Helpdesk VMs"]
    assert as_admin.post(URL, {**fields(slapd), "save": "1"}).status_code == 302
    role = Group.objects.get(name=RESTORE_OPERATOR)
    data = {"external_group": group_dn("Helpdesk"), "role": role.pk, "grant_folders": [folder.pk]}
    assert as_admin.post(URL + "mappings/", data).status_code == 302
    assert "Helpdesk VMs" in as_admin.get(URL).content.decode()
    assert Client().post("/login/", {"username": "dana", "password": password_of("dana")}).status_code == 302
    dana = django_user_model.objects.get(username="dana")
    assert [g.folder_id for g in RestoreGrant.objects.filter(user=dana)] == [folder.pk]
