"""`manage.py vault rehydrate POINT [--priority High] --yes` against Azurite's Archive tier: without
--yes it says what the rehydration costs and takes and changes nothing; with it, it starts
(Azurite at once) and is audited as the command-line user."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.factories.archive import archived_point_in_azurite, chunk_tiers
from vault.engine.blobs import ARCHIVE, HOT
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def archived(settings, tmp_path, azurite, azure_backend, helpdesk) -> RecoveryPoint:
    return archived_point_in_azurite(settings, tmp_path / "store", azurite, azure_backend.container, helpdesk)


def vault(*args: str) -> str:
    out = io.StringIO()
    call_command("vault", *args, stdout=out)
    return out.getvalue()


def test_without_yes_it_says_the_cost_and_time_and_changes_nothing(archived):
    said = vault("rehydrate", str(archived.pk)[:8], "--priority", "High")

    assert "billed by Azure" in said and "High priority" in said and "up to 1 hour" in said
    assert f"{archived.archived_chunks} archived chunk" in said and "Nothing was started" in said
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()
    with pytest.raises(CommandError):
        vault("rehydrate", str(archived.pk), "--priority", "Urgent", "--yes")


def test_with_yes_it_starts_the_rehydration_and_audits_it(archived):
    said = vault("rehydrate", str(archived.pk), "--yes")

    assert "up to 15 hours" in said and "can be browsed and restored now" in said  # Azurite: at once
    assert chunk_tiers() == {HOT}
    entry = AuditEntry.objects.get(action="point.rehydrate")
    assert entry.actor_name == "command line" and entry.details["priority"] == "Standard"
    archived.refresh_from_db()
    assert archived.archived_chunks == 0
