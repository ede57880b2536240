"""API tokens on the pages: everyone lists, creates (key shown once) and revokes their own tokens;
administrators list and revoke anyone's; nobody else sees or touches someone else's."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken
from accounts.tokens import create_token
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def test_a_user_creates_a_token_and_sees_its_key_once(as_helpdesk, helpdesk):
    response = as_helpdesk.post(
        reverse("tokens:mine"), {"name": "my script", "scope": "operate", "expires_in_days": "30"}, headers=HX
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=helpdesk)
    key = response.context["key"]
    assert key.startswith("vmb_") and key in response.content.decode()
    assert token.name == "my script" and token.scope == "operate" and token.expires is not None
    assert "<html" not in response.content.decode()  # the fragment, for My account

    again = as_helpdesk.get(reverse("tokens:mine"), headers=HX).content.decode()
    assert key not in again and "my script" in again and token.prefix in again
    assert AuditEntry.objects.filter(action="api.token_create", actor=helpdesk).count() == 1
    assert Client(headers={"Authorization": f"Token {key}"}).get("/api/v1/me/").status_code == 200


def test_a_token_without_a_name_is_refused_with_a_sentence(as_helpdesk, helpdesk):
    response = as_helpdesk.post(reverse("tokens:mine"), {"name": " ", "scope": "read"}, headers=HX)
    assert response.status_code == 200 and not ApiToken.objects.filter(user=helpdesk).exists()
    assert response.context["key"] is None and "This field is required" in response.content.decode()


def test_the_list_shows_scope_expiry_last_use_and_state(as_helpdesk, helpdesk):
    create_token(helpdesk, helpdesk, "reader", ApiToken.Scope.READ, 90)
    revoked, _ = create_token(helpdesk, helpdesk, "old laptop")
    as_helpdesk.post(reverse("tokens:revoke", args=[revoked.pk]), headers=HX)
    page = as_helpdesk.get(reverse("tokens:mine")).content.decode()  # the whole page, without HTMX
    assert "<html" in page and "Read only" in page and "reader" in page and "revoked" in page
    assert "never" in page  # last used


def test_a_user_revokes_their_own_token_but_not_someone_elses(as_helpdesk, helpdesk, admin):
    mine, _ = create_token(helpdesk, helpdesk, "mine")
    alices, _ = create_token(admin, admin, "alice's")
    response = as_helpdesk.post(reverse("tokens:revoke", args=[mine.pk]), headers=HX)
    assert response.status_code == 200 and "is revoked" in response.content.decode()
    assert ApiToken.objects.get(pk=mine.pk).revoked is not None
    assert as_helpdesk.post(reverse("tokens:revoke", args=[alices.pk])).status_code == 404
    assert ApiToken.objects.get(pk=alices.pk).revoked is None
    assert AuditEntry.objects.filter(action="api.token_revoke").count() == 1


def test_an_administrator_lists_and_revokes_someone_elses_tokens(as_admin, helpdesk):
    token, key = create_token(helpdesk, helpdesk, "bob's laptop")
    page = as_admin.get(reverse("tokens:of_user", args=[helpdesk.pk]), headers=HX).content.decode()
    assert "bob&#x27;s laptop" in page and "Create token" not in page and key not in page
    response = as_admin.post(reverse("tokens:revoke", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("tokens:of_user", args=[helpdesk.pk])
    assert ApiToken.objects.get(pk=token.pk).revoked is not None


def test_others_may_not_list_someone_elses_tokens(as_helpdesk, as_auditor, admin):
    for client in (as_helpdesk, as_auditor):
        assert client.get(reverse("tokens:of_user", args=[admin.pk]), headers=HX).status_code == 403


def test_revoking_needs_a_post_and_csrf(helpdesk):
    token, _ = create_token(helpdesk, helpdesk, "mine")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(helpdesk)
    assert browser.get(reverse("tokens:revoke", args=[token.pk])).status_code == 405
    assert browser.post(reverse("tokens:revoke", args=[token.pk])).status_code == 403
    assert ApiToken.objects.get(pk=token.pk).revoked is None
