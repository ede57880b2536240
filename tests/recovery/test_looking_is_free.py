"""Looking at a point costs nothing: a point only the vault (Azurite) holds, whose chunks are in the
Archive tier, is opened through every page (point, folder, other versions, a download) without any
chunk leaving the Archive tier; the page says what a rehydration costs and takes, and only the
confirmed POST of someone who may restore files from the VM starts it, with an audit row."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.factories.archive import archived_vault_point, chunk_tiers, counted, use_azure_vault
from tests.factories.people import token_client
from vault.engine.blobs import ARCHIVE, HOT
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def archived(settings, tmp_path, azurite, azure_backend, helpdesk) -> RecoveryPoint:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    return archived_vault_point(tmp_path / "store", helpdesk)


def test_no_page_view_of_an_archived_point_starts_a_rehydration(archived, helpdesk, as_helpdesk):
    point = counted(archived)
    assert "Archive tier: rehydrate to browse" in as_helpdesk.get(f"/recovery/vms/{point.vm_id}/").content.decode()
    page = as_helpdesk.get(f"/recovery/points/{point.pk}/").content.decode()
    assert f"{point.archived_chunks} chunk" in page and "Archive tier" in page
    assert "up to 15 hours" in page and "up to 1 hour" in page and "bills" in page
    assert f'action="/recovery/points/{point.pk}/rehydrate/"' in page and 'name="confirm"' in page
    folder = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/", {"path": "/home"})
    assert folder.status_code == 200 and "Rehydrate this point" in folder.content.decode()
    as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/versions/", {"path": "/etc/hostname"})
    download = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/file/", {"path": "/etc/hostname"})
    assert download.status_code == 404
    api = token_client(helpdesk)
    volumes = api.get(f"/api/v1/points/{point.pk}/volumes/")
    assert volumes.status_code == 200 and "Archive tier" in volumes.json()[0]["error"]
    files = api.get(f"/api/v1/points/{point.pk}/files/", {"disk": 2000, "volume": 1, "path": "/etc"})
    assert files.status_code == 409 and "Archive tier" in files.json()["detail"]
    with pytest.raises(CommandError, match="Archive tier"):
        call_command("ls", "lnx-01", "2000:1:/etc", point=str(point.pk))
    assert chunk_tiers() == {ARCHIVE}  # Azurite would have made them Hot at once
    assert not AuditEntry.objects.filter(action="point.rehydrate").exists()


def test_a_read_that_meets_an_archived_chunk_shows_the_panel_and_marks_the_point(archived, as_helpdesk):
    assert archived.archived_chunks == 0  # tiered before the cache existed: nothing counted yet
    page = as_helpdesk.get(f"/recovery/points/{archived.pk}/").content.decode()
    assert "Chunks of this point are in the vault's Archive tier" in page
    assert "Rehydrate this point" in page
    archived.refresh_from_db()
    assert archived.archived_chunks is None  # some, not counted: later views do not read again
    assert chunk_tiers() == {ARCHIVE}


def test_the_confirmed_post_starts_the_rehydration_and_audits_it(archived, as_helpdesk):
    point = counted(archived)
    url = f"/recovery/points/{point.pk}/rehydrate/"
    unconfirmed = as_helpdesk.post(url, {"priority": "High"})
    assert unconfirmed.status_code == 302 and chunk_tiers() == {ARCHIVE}
    assert as_helpdesk.get(url).status_code == 405  # never on a GET

    response = as_helpdesk.post(url, {"priority": "High", "confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == f"/recovery/points/{point.pk}/"
    assert chunk_tiers() == {HOT}  # Azurite rehydrates at once; Azure would take hours
    entry = AuditEntry.objects.get(action="point.rehydrate")
    assert entry.actor_name == "bob" and entry.target_id == str(point.pk)
    assert entry.details["priority"] == "High" and entry.details["archived_chunks"] == point.archived_chunks
    point.refresh_from_db()
    assert point.archived_chunks == 0 and point.rehydration_priority == "High"
    assert "browsable" in as_helpdesk.get(f"/recovery/points/{point.pk}/").content.decode()


def test_only_who_may_restore_files_from_the_vm_may_rehydrate(archived, as_auditor, as_admin):
    point = counted(archived)
    url = f"/recovery/points/{point.pk}/rehydrate/"
    assert as_auditor.post(url, {"priority": "Standard", "confirm": "yes"}).status_code in (403, 404)
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()
    assert as_admin.post(url, {"priority": "Urgent", "confirm": "yes"}).status_code == 302
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()
