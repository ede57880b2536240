"""POST /api/v1/points/{id}/rehydrate/ against Azurite's Archive tier: without "confirm": true a 400
that says the cost class and time, and nothing starts; confirmed by whoever may restore files from
the VM, it starts (Azurite at once) and is audited; others are refused. A point's JSON carries its
cached archive state, read without touching the vault."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEntry
from tests.factories.archive import archived_point_in_azurite, chunk_tiers
from tests.factories.people import token_client
from vault.engine.blobs import ARCHIVE, HOT
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def archived(settings, tmp_path, azurite, azure_backend, helpdesk) -> RecoveryPoint:
    return archived_point_in_azurite(settings, tmp_path / "store", azurite, azure_backend.container, helpdesk)


def post(client, point: RecoveryPoint, body: dict):
    return client.post(f"/api/v1/points/{point.pk}/rehydrate/", json.dumps(body), "application/json")


def test_an_unconfirmed_rehydration_says_what_it_costs_and_takes_and_starts_nothing(archived, helpdesk):
    bob = token_client(helpdesk)
    for priority, takes in (("Standard", "up to 15 hours"), ("High", "up to 1 hour")):
        response = post(bob, archived, {"priority": priority})
        assert response.status_code == 400
        [message] = response.json()["confirm"]
        assert "billed by Azure" in message and takes in message and f"{priority} priority" in message
        assert f"{archived.archived_chunks} archived chunk" in message and "nothing was started" in message
    assert post(bob, archived, {"priority": "Urgent", "confirm": True}).status_code == 400
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()


def test_the_point_shows_its_cached_archive_state(archived, helpdesk):
    bob = token_client(helpdesk)
    body = bob.get(f"/api/v1/points/{archived.pk}/").json()
    assert body["archive"]["archived_chunks"] == archived.archived_chunks > 0
    assert body["archive"]["archived_bytes"] == archived.archived_bytes > 0
    assert body["archive"]["rehydrating_chunks"] == 0 and body["archive"]["checked_at"]
    listed = bob.get("/api/v1/points/").json()["results"]
    assert listed[0]["archive"]["archived_chunks"] == archived.archived_chunks
    assert chunk_tiers() == {ARCHIVE}


def test_a_confirmed_rehydration_starts_and_is_audited(archived, helpdesk):
    response = post(token_client(helpdesk), archived, {"priority": "High", "confirm": True})

    assert response.status_code == 202, response.content
    assert response.json()["archived_chunks"] == 0 and "online" in response.json()["detail"]  # Azurite: at once
    assert chunk_tiers() == {HOT}
    entry = AuditEntry.objects.get(action="point.rehydrate")
    assert (entry.actor_name, entry.target_id) == ("bob", str(archived.pk))
    assert entry.details["priority"] == "High" and entry.details["archived_chunks"] == archived.archived_chunks
    archived.refresh_from_db()
    assert archived.archived_chunks == 0 and archived.rehydration_priority == "High"


def test_only_who_may_restore_files_from_the_vm_may_rehydrate(archived, auditor, norole):
    assert post(token_client(auditor), archived, {"confirm": True}).status_code == 403
    assert post(token_client(norole), archived, {"confirm": True}).status_code == 403
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()
