"""Sign-in with Microsoft Entra ID against a real OpenID Connect provider (oidc-provider over HTTPS with its
own CA): the code flow with PKCE, group and app-role claims mapped to roles, refusals with a sentence."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts.models import Profile
from accounts.roles import BACKUP_ADMIN, RESTORE_OPERATOR
from audit.models import AuditEntry
from teams.models import GroupMapping
from tests.factories.people import create_test_user
from tests.fixtures.oidc import ACCOUNTS, ADMIN_APP_ROLE, HELPDESK_GROUP, sign_in_through_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def mappings(db):
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=HELPDESK_GROUP, role=Group.objects.get(name=RESTORE_OPERATOR)
    )
    GroupMapping.objects.create(
        source=GroupMapping.Source.ENTRA, external_group=ADMIN_APP_ROLE, role=Group.objects.get(name=BACKUP_ADMIN)
    )


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def test_a_member_of_a_mapped_group_signs_in_with_its_role(entra_settings, mappings):
    client = Client()
    response = sign_in_through_provider(client, entra_settings, "ada")
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(username="ada@contoso.example")
    assert list(user.groups.values_list("name", flat=True)) == [RESTORE_OPERATOR]
    assert user.profile.sign_in == Profile.SignIn.ENTRA
    assert user.profile.external_id == ACCOUNTS["ada"].oid
    assert not user.has_usable_password()
    assert (user.first_name, user.last_name, user.email) == ("Ada", "Lovelace", "ada@contoso.example")
    assert client.get("/").status_code == 200
    assert AuditEntry.objects.filter(action="auth.login", actor=user).exists()


def test_a_disabled_user_is_refused_and_their_open_session_ends(entra_settings, mappings):
    client = Client()
    sign_in_through_provider(client, entra_settings, "ada")
    User.objects.filter(username="ada@contoso.example").update(is_active=False)
    assert client.get("/").status_code == 302  # the session no longer signs anyone in
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert _messages(response) == ["Your account is disabled here; ask an administrator."]


def test_an_app_role_claim_maps_to_a_role_too(entra_settings, mappings):
    client = Client()
    sign_in_through_provider(client, entra_settings, "cleo")
    user = User.objects.get(username="cleo@contoso.example")
    assert list(user.groups.values_list("name", flat=True)) == [BACKUP_ADMIN]


def test_a_user_without_any_mapped_group_is_refused_with_a_sentence(entra_settings, mappings):
    client = Client()
    response = sign_in_through_provider(client, entra_settings, "bert")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert _messages(response) == ["Your Microsoft account is in no group that has a role here; ask an administrator."]
    assert not User.objects.filter(username="bert@contoso.example").exists()
    assert client.get("/").status_code == 302  # not signed in
    refused = AuditEntry.objects.get(action="auth.entra_refused")
    assert refused.target_label == "bert@contoso.example"


def test_leaving_the_last_mapped_group_takes_the_role_away_and_refuses(entra_settings, mappings):
    sign_in_through_provider(Client(), entra_settings, "ada")
    GroupMapping.objects.filter(external_group=HELPDESK_GROUP).delete()
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert response["Location"] == "/login/"
    assert not User.objects.get(username="ada@contoso.example").groups.exists()


def test_signing_in_again_finds_the_user_by_object_id(entra_settings, mappings):
    sign_in_through_provider(Client(), entra_settings, "ada")
    User.objects.filter(username="ada@contoso.example").update(username="renamed")
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert response["Location"] == "/"
    assert User.objects.filter(profile__sign_in="entra").count() == 1


def test_a_local_user_of_the_same_name_is_never_taken_over(entra_settings, mappings):
    local = create_test_user("ada@contoso.example", None)
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert response["Location"] == "/login/"
    assert "already exists here and does not sign in with Microsoft" in _messages(response)[0]
    assert not local.groups.exists()


def test_a_callback_with_a_state_this_browser_never_started_is_refused(entra_settings, mappings):
    client = Client()
    client.get("/oidc/sign-in/")
    response = client.get("/oidc/callback/?code=abc&state=forged")
    assert response["Location"] == "/login/"
    assert _messages(response) == [
        "This answer from Microsoft does not match a sign-in started in this browser; sign in again."
    ]


def test_an_error_from_the_provider_is_shown_by_its_code_never_its_free_text(entra_settings):
    response = Client().get("/oidc/callback/?error=access_denied&error_description=Call+0800+to+unlock")
    assert response["Location"] == "/login/"
    assert _messages(response) == ["The sign-in was cancelled at Microsoft, or Microsoft refused it (access_denied)."]
    response = Client().get("/oidc/callback/?error=server_error&error_description=Call+0800+to+unlock")
    assert _messages(response) == ["Microsoft did not sign you in (server_error)."]
    response = Client().get("/oidc/callback/?error=<script>")
    assert _messages(response) == ["Microsoft did not sign you in (unknown_error)."]


def test_the_login_page_offers_the_button_only_when_configured(client, settings, oidc_provider):
    assert "Sign in with Microsoft" not in client.get("/login/").content.decode()
    assert client.get("/oidc/sign-in/").status_code == 404
    from tests.fixtures.oidc import configure

    configure(settings, oidc_provider)
    page = client.get("/login/?next=/jobs/").content.decode()
    assert 'href="/oidc/sign-in/?next=/jobs/"' in page and "Sign in with Microsoft" in page


def test_the_sign_in_asks_for_pkce_and_a_nonce(entra_settings):
    location = Client().get("/oidc/sign-in/")["Location"]
    assert location.startswith(f"{entra_settings.issuer}/auth?")
    assert "code_challenge_method=S256" in location and "code_challenge=" in location and "nonce=" in location


def test_a_provider_that_does_not_answer_gives_a_sentence_not_an_error_page(entra_settings, settings):
    from lib.oidc import EntraIdSettings

    settings.ENTRA_ID = EntraIdSettings(issuer="https://127.0.0.1:9/tenant/v2.0", client_id="x", client_secret="y")
    response = Client().get("/oidc/sign-in/")
    assert response["Location"] == "/login/"
    [sentence] = _messages(response)
    assert sentence.startswith("Sign-in with Microsoft is unavailable: the identity provider's discovery document at")


def test_a_provider_certificate_from_an_untrusted_ca_is_refused(entra_settings, settings):
    from dataclasses import replace

    settings.ENTRA_ID = replace(settings.ENTRA_ID, ca_file="")  # the system's trust store only
    response = Client().get("/oidc/sign-in/")
    [sentence] = _messages(response)
    assert "has a certificate this server does not trust" in sentence


def test_a_key_id_not_seen_yet_fetches_the_providers_keys_again(entra_settings, mappings):
    import time

    from teams import oidc

    oidc.signing_keys()
    oidc._cache["jwks"] = (time.monotonic(), {"keys": []})  # cached before the provider rolled its key
    response = sign_in_through_provider(Client(), entra_settings, "ada")
    assert response["Location"] == "/"


def test_an_issuer_the_provider_does_not_serve_is_named_in_the_sentence(entra_settings, settings):
    from dataclasses import replace

    settings.ENTRA_ID = replace(settings.ENTRA_ID, issuer=f"{entra_settings.issuer}/elsewhere")
    [sentence] = _messages(Client().get("/oidc/sign-in/"))
    assert sentence == (
        f"Sign-in with Microsoft is unavailable: the identity provider's discovery document at "
        f"{entra_settings.issuer}/elsewhere/.well-known/openid-configuration did not answer (HTTP 404)."
    )
