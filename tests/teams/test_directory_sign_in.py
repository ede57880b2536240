"""Signing in with the directory: a real OpenLDAP slapd over LDAPS (tests/fixtures/ldap.py), the login
page, and roles from the groups' mappings worked out again at each sign-in."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import Profile
from accounts.roles import BACKUP_ADMIN, RESTORE_OPERATOR
from audit.models import AuditEntry
from teams.directory_backend import NAME_TAKEN, NO_ROLE, UNAVAILABLE
from teams.models import DirectoryConfig, GroupMapping
from tools.ldap_server import GROUPS, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn, password_of, user_dn

pytestmark = pytest.mark.django_db


def configure(uri: str, ca_file: str, **changes: object) -> DirectoryConfig:
    config = DirectoryConfig.load()
    values = {
        "enabled": True,
        "server_uri": uri,
        "ca_file": ca_file,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": "ou=people,dc=corp,dc=example",
        "user_search_filter": "(uid=%(user)s)",
        "group_search_base": GROUPS,
        "group_type": DirectoryConfig.GroupType.GROUP_OF_NAMES,
        **changes,
    }
    for name, value in values.items():
        setattr(config, name, value)
    config.save()
    return config


@pytest.fixture
def directory(slapd: Slapd, redis_conn: Any) -> Slapd:
    # redis_conn: an empty Redis, so the sign-in throttle's count of earlier tests' refusals is gone.
    configure(slapd.uri, str(slapd.ca_file))
    for group, role in (("Helpdesk", RESTORE_OPERATOR), ("Backup Admins", BACKUP_ADMIN)):
        GroupMapping.objects.create(
            source=GroupMapping.Source.DIRECTORY, external_group=group_dn(group), role=Group.objects.get(name=role)
        )
    return slapd


def sign_in(username: str, password: str | None = None) -> tuple[Client, Any]:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password or password_of(username)})
    return client, response


def test_a_helpdesk_member_signs_in_over_ldaps_as_restore_operator(directory, django_user_model):
    client, response = sign_in("dana")
    assert response.status_code == 302
    dana = django_user_model.objects.get(username="dana")
    assert list(dana.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
    assert dana.profile.sign_in == Profile.SignIn.DIRECTORY
    assert dana.profile.external_id == user_dn("dana")
    assert not dana.has_usable_password()
    assert dana.email == "dana@corp.example"
    assert client.get("/recovery/").status_code == 200


def test_removed_from_the_group_the_next_sign_in_is_refused_and_the_role_is_gone(directory, django_user_model):
    assert sign_in("dana")[1].status_code == 302
    directory.remove_member("Helpdesk", "dana")
    try:
        client, response = sign_in("dana")
    finally:
        directory.add_member("Helpdesk", "dana")
    assert response.status_code == 200
    assert NO_ROLE in response.content.decode()
    dana = django_user_model.objects.get(username="dana")
    assert not dana.groups.exists()
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action="user.groups_applied", details__roles=[]).exists()


def test_a_user_in_no_mapped_group_is_refused_with_the_sentence(directory):
    _, response = sign_in("nora")
    assert NO_ROLE in response.content.decode()


def test_a_wrong_password_gets_the_usual_message_and_changes_nothing(directory, django_user_model):
    _, response = sign_in("dana", "not-her-password")
    assert response.status_code == 200
    assert "Please enter a correct" in response.content.decode()
    assert not django_user_model.objects.filter(username="dana").exists()


def test_an_unreachable_directory_is_said_so_and_changes_nothing(directory, django_user_model):
    configure("ldaps://127.0.0.1:9", str(directory.ca_file))
    _, response = sign_in("dana")
    assert UNAVAILABLE in response.content.decode()
    assert not django_user_model.objects.filter(username="dana").exists()


def test_a_server_certificate_from_another_ca_is_refused(directory, other_ca, django_user_model):
    configure(directory.uri, str(other_ca.cert_file))
    _, response = sign_in("dana")
    assert UNAVAILABLE in response.content.decode()
    assert not django_user_model.objects.filter(username="dana").exists()


def test_starttls_on_plain_ldap_signs_in_too(directory):
    configure(directory.starttls_uri, str(directory.ca_file), start_tls=True)
    assert sign_in("ada")[1].status_code == 302


def test_plain_ldap_without_starttls_is_never_used(directory, django_user_model):
    configure(directory.starttls_uri, str(directory.ca_file), start_tls=False)
    _, response = sign_in("dana")
    assert response.status_code == 200
    assert not django_user_model.objects.filter(username="dana").exists()


def test_a_directory_password_never_opens_a_local_account_of_the_same_name(directory, django_user_model):
    local = django_user_model.objects.create_user("ada", password="local-password-123")
    _, response = sign_in("ada")
    assert NAME_TAKEN in response.content.decode()
    local.refresh_from_db()
    assert local.has_usable_password()
    assert not local.groups.exists()


def test_local_accounts_still_sign_in_with_their_password(directory, admin):
    client = Client()
    assert client.post("/login/", {"username": admin.username, "password": "x"}).status_code == 200
    admin.set_password("Local-Passw0rd!")
    admin.save()
    assert client.post("/login/", {"username": admin.username, "password": "Local-Passw0rd!"}).status_code == 302


def test_a_failing_group_search_refuses_the_sign_in_and_keeps_the_roles(directory, django_user_model):
    assert sign_in("dana")[1].status_code == 302
    configure(directory.uri, str(directory.ca_file), group_search_base="ou=gone,dc=corp,dc=example")
    _, response = sign_in("dana")
    assert UNAVAILABLE in response.content.decode()
    dana = django_user_model.objects.get(username="dana")
    assert list(dana.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]


def test_groups_in_groups_give_their_role(directory, django_user_model):
    # A nested group: "Tier 2" is a member of Helpdesk, and erin joins Tier 2.
    directory.modify(
        f"dn: cn=Tier 2,{GROUPS}\nchangetype: add\nobjectClass: groupOfNames\ncn: Tier 2\nmember: {user_dn('erin')}\n"
    )
    directory.add_member("Helpdesk", "x", dn=f"cn=Tier 2,{GROUPS}")
    try:
        assert sign_in("erin")[1].status_code == 302
    finally:
        directory.remove_member("Helpdesk", "x", dn=f"cn=Tier 2,{GROUPS}")
        directory.modify(f"dn: cn=Tier 2,{GROUPS}\nchangetype: delete\n")
    erin = django_user_model.objects.get(username="erin")
    assert list(erin.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
