"""Garbage collection grace has a floor of one hour: the settings page refuses less, and a value
below it in the database (written before the floor, or by hand) still gives an hour."""

from __future__ import annotations

import pytest

from vault import actions
from vault.forms import VaultSettingsForm
from vault.models import VaultSettings

pytestmark = pytest.mark.django_db
NO_VAULT = {"kind": "none", "container": "vmbackup", "auth": "connection_string", "upload_threads": 4, "tier": "Cool"}


def test_the_settings_form_refuses_a_grace_of_zero_with_a_sentence():
    form = VaultSettingsForm({**NO_VAULT, "gc_grace_hours": 0}, instance=VaultSettings.current())

    assert not form.is_valid()
    assert form.errors["gc_grace_hours"] == [
        "At least one hour: garbage collection must leave alone, for a while, the chunks that running backups "
        "may have just decided to reuse."
    ]


def test_the_settings_page_says_why_and_keeps_the_stored_grace(as_admin):
    VaultSettings.objects.update_or_create(pk=1, defaults={"gc_grace_hours": 24})

    body = as_admin.post("/vault/settings/", {**NO_VAULT, "gc_grace_hours": 0}).content.decode()

    assert "At least one hour" in body
    assert VaultSettings.current().gc_grace_hours == 24


def test_one_hour_is_accepted():
    assert VaultSettingsForm({**NO_VAULT, "gc_grace_hours": 1}, instance=VaultSettings.current()).is_valid()


def test_a_grace_of_zero_forced_into_the_database_still_gives_an_hour():
    VaultSettings.objects.update_or_create(pk=1, defaults={"gc_grace_hours": 24})
    VaultSettings.objects.filter(pk=1).update(gc_grace_hours=0)  # bypasses every validator

    assert actions.gc_grace_seconds(VaultSettings.current()) == 3600


def test_a_grace_above_the_floor_is_used_as_set():
    VaultSettings.objects.update_or_create(pk=1, defaults={"gc_grace_hours": 24})

    assert actions.gc_grace_seconds(VaultSettings.current()) == 24 * 3600
