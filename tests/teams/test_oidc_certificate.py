"""The application authenticates to the provider with a certificate instead of a secret (a client assertion
signed with its key, private_key_jwt, as Entra ID takes certificates), against the real provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts.roles import RESTORE_OPERATOR
from teams.models import GroupMapping
from tests.fixtures.oidc import ACCOUNTS, HELPDESK_GROUP, configure, sign_in_through_provider
from tools.oidc_server import OidcProvider

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def certificate_provider(tmp_path_factory) -> Iterator[OidcProvider]:
    provider = OidcProvider(
        tmp_path_factory.mktemp("oidc-cert"),
        redirect_uri="http://testserver/oidc/callback/",
        accounts=ACCOUNTS,
        certificate_auth=True,
    ).start()
    yield provider
    provider.stop()


def _configure(settings, provider: OidcProvider, certificate_file: str) -> None:
    configure(settings, provider, client_secret="", certificate_file=certificate_file)


def test_a_sign_in_with_the_applications_certificate_succeeds(settings, certificate_provider):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=HELPDESK_GROUP, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    _configure(settings, certificate_provider, str(certificate_provider.client_certificate))
    response = sign_in_through_provider(Client(), certificate_provider, "ada")
    assert response["Location"] == "/"
    assert User.objects.get(username="ada@contoso.example").groups.get().name == RESTORE_OPERATOR


def test_another_certificate_is_refused_by_the_provider(settings, certificate_provider, tmp_path):
    other = OidcProvider(tmp_path, redirect_uri="http://testserver/", accounts={}, certificate_auth=True)
    other._client()  # writes another certificate and key into tmp_path/client.pem
    _configure(settings, certificate_provider, str(other.client_certificate))
    response = sign_in_through_provider(Client(), certificate_provider, "ada")
    assert response["Location"] == "/login/"
    assert [str(m) for m in response.wsgi_request._messages] == [
        "Microsoft did not accept this application's credentials (client secret or certificate); ask an administrator."
    ]
