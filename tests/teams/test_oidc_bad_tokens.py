"""A bad ID token never signs anyone in: the real provider's code flow runs, and the ID token it returns is
altered on its way to the backend (tampered, re-signed for another audience, expired, signed with another
key, from another issuer, for another sign-in). Each is refused with its sentence on the login page."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts.roles import BACKUP_ADMIN, RESTORE_OPERATOR
from teams.models import GroupMapping
from teams.oidc_backend import EntraIdBackend, Refused
from tests.fixtures.oidc import ADMIN_APP_ROLE, HELPDESK_GROUP, sign_in_through_provider
from tools.oidc_server import OidcProvider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def mappings(db):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=HELPDESK_GROUP, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=ADMIN_APP_ROLE, role=Group.objects.get(name=BACKUP_ADMIN)
    )


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def tampered(provider: OidcProvider, token: str) -> str:
    """The payload changed (an admin app role added), the provider's signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = [ADMIN_APP_ROLE]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def wrong_audience(provider: OidcProvider, token: str) -> str:
    return provider.sign({**_claims(token), "aud": "another-application"})


def expired(provider: OidcProvider, token: str) -> str:
    now = int(time.time())
    return provider.sign({**_claims(token), "iat": now - 7200, "exp": now - 3600})


def another_key(provider: OidcProvider, token: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return provider.sign(_claims(token), key=key)


def another_issuer(provider: OidcProvider, token: str) -> str:
    return provider.sign({**_claims(token), "iss": "https://login.microsoftonline.com/another-tenant/v2.0"})


def another_sign_in(provider: OidcProvider, token: str) -> str:
    return provider.sign({**_claims(token), "nonce": "from-another-sign-in"})


def unsigned(provider: OidcProvider, token: str) -> str:
    return jwt.encode(_claims(token), None, algorithm="none")  # type: ignore[arg-type]


CASES: list[tuple[Callable[[OidcProvider, str], str], str]] = [
    (tampered, "The ID token's signature is not the identity provider's: it was altered."),
    (wrong_audience, "The ID token was issued to another application (wrong audience)."),
    (expired, "The ID token has expired; sign in again."),
    (another_key, "The ID token's signature is not the identity provider's: it was altered."),
    (another_issuer, "The ID token was not issued by {issuer}."),
    (another_sign_in, "The ID token does not belong to this browser's sign-in (nonce); sign in again."),
    (unsigned, "The ID token is signed with 'none', not RS256."),
]


@pytest.mark.parametrize(("alter", "sentence"), CASES, ids=[alter.__name__ for alter, _ in CASES])
def test_a_bad_id_token_is_refused_with_its_sentence(entra_settings, monkeypatch, alter, sentence):
    real_get_token = EntraIdBackend.get_token

    def get_token(self: EntraIdBackend, payload: dict[str, str]) -> dict[str, Any]:
        answer = real_get_token(self, payload)
        return {**answer, "id_token": alter(entra_settings, answer["id_token"])}

    monkeypatch.setattr(EntraIdBackend, "get_token", get_token)
    client = Client()
    response = sign_in_through_provider(client, entra_settings, "ada")
    assert response["Location"] == "/login/"
    assert [str(m) for m in response.wsgi_request._messages] == [sentence.format(issuer=entra_settings.issuer)]
    assert not User.objects.exists()
    assert client.get("/").status_code == 302


def test_the_real_token_signs_in_when_nothing_is_altered(entra_settings):
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert response["Location"] == "/"


def test_a_token_within_the_clock_leeway_is_accepted_and_beyond_it_refused(entra_settings):
    now = int(time.time())
    claims = {"iss": entra_settings.issuer, "aud": entra_settings.client_id, "sub": "x", "iat": now - 600, "nonce": "n"}
    backend = EntraIdBackend()
    assert backend.verify_token(entra_settings.sign({**claims, "exp": now - 30}), nonce="n")["sub"] == "x"
    with pytest.raises(Refused, match="expired"):
        backend.verify_token(entra_settings.sign({**claims, "exp": now - 120}), nonce="n")


def test_a_token_for_several_audiences_must_name_this_application_as_its_party(entra_settings):
    now = int(time.time())
    claims = {
        "iss": entra_settings.issuer,
        "aud": [entra_settings.client_id, "another-application"],
        "sub": "x",
        "iat": now,
        "exp": now + 600,
        "nonce": "n",
    }
    backend = EntraIdBackend()
    with pytest.raises(Refused, match="wrong audience"):
        backend.verify_token(entra_settings.sign({**claims, "azp": "another-application"}), nonce="n")
    assert backend.verify_token(entra_settings.sign({**claims, "azp": entra_settings.client_id}), nonce="n")
