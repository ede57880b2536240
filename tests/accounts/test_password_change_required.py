"""A user holding a one-time password is sent to the password change before any other page, and the
API refuses them with a sentence, until they chose their own password."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts import actions, tokens
from accounts.middleware import MUST_CHANGE_SENTENCE
from accounts.models import Profile, profile_of
from accounts.roles import RESTORE_OPERATOR
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db
NEW = "my own long passphrase"


@pytest.fixture
def fresh(admin):
    created = actions.create_user(admin, "erin", roles=[RESTORE_OPERATOR])
    client = Client()
    assert client.login(username="erin", password=created.one_time_password)
    return client, created


def test_every_page_sends_a_user_with_a_one_time_password_to_change_it(fresh):
    client, _ = fresh
    response = client.get(reverse("recovery:index"))
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:password") + "?next=%2Frecovery%2F"
    assert client.get(reverse("dashboard:overview"))["Location"] == reverse("teams:password")
    assert "choose your own password" in client.get(reverse("teams:password")).content.decode()
    htmx = client.get(reverse("jobs:list"), headers={"HX-Request": "true"})
    assert htmx["HX-Redirect"].startswith(reverse("teams:password"))


def test_the_api_refuses_a_user_with_a_one_time_password_with_a_sentence(fresh):
    client, _ = fresh
    response = client.get("/api/v1/me/")
    assert response.status_code == 403
    assert response.json() == {"detail": MUST_CHANGE_SENTENCE}


def test_after_choosing_a_password_the_user_goes_where_they_were_going(fresh):
    client, created = fresh
    response = client.post(
        reverse("teams:password") + "?next=/recovery/",
        {"old_password": created.one_time_password, "new_password1": NEW, "new_password2": NEW, "next": "/recovery/"},
    )
    assert response.status_code == 302 and response["Location"] == "/recovery/"
    assert client.get(reverse("recovery:index")).status_code == 200
    created.user.refresh_from_db()
    assert created.user.check_password(NEW) and not profile_of(created.user).must_change_password
    assert AuditEntry.objects.filter(action="user.password_changed", actor_name="erin").exists()


def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(fresh):
    client, created = fresh
    url = reverse("teams:password")
    wrong = client.post(url, {"old_password": "nope", "new_password1": NEW, "new_password2": NEW})
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()
    weak = client.post(url, {"old_password": created.one_time_password, "new_password1": "abc", "new_password2": "abc"})
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    assert profile_of(created.user).must_change_password


def test_an_offsite_next_is_not_followed(fresh):
    client, created = fresh
    data = {"old_password": created.one_time_password, "new_password1": NEW, "new_password2": NEW}
    response = client.post(reverse("teams:password"), {**data, "next": "https://evil.example/"})
    assert response["Location"] == reverse("teams:account")


def test_logging_out_is_still_possible(fresh):
    client, _ = fresh
    assert client.post(reverse("logout"))["Location"] == reverse("login")


def test_an_api_token_of_a_user_whose_password_was_reset_is_refused_until_they_choose_one(admin, helpdesk):
    _, key = tokens.create_token(None, helpdesk, "script")
    script = Client(headers={"Authorization": f"Token {key}"})
    assert script.get("/api/v1/me/").status_code == 200
    actions.reset_password(admin, helpdesk)
    response = script.get("/api/v1/me/")
    assert response.status_code == 403 and response.json() == {"detail": MUST_CHANGE_SENTENCE}
    Profile.objects.filter(user=helpdesk).update(must_change_password=False)  # as choosing one does
    assert script.get("/api/v1/me/").status_code == 200
