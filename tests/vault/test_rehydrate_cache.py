"""Archive state: counted from one listing, started only by the rehydrate action (audited), cached
on the point by the tiering job, and checked again on a sample (HEAD requests, never a listing) at
most every ten minutes. Against Azurite, which supports access tiers (a directory vault has none)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEntry
from tests.factories.archive import archived_vault_point, chunk_tiers, counted, use_azure_vault
from tests.vault import backup
from vault import actions, archive
from vault.engine import RemoteVault, replicate_point
from vault.engine.blobs import ARCHIVE, HOT, DirectoryBackend
from vault.engine.tiers import apply_tiering, archive_state, start_rehydration
from vault.models import RecoveryPoint, VaultSettings


class CallCounter:
    """Counts a real back end's listings and HEAD requests (the calls that cost on Azure)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend: object) -> None:
        self.lists = self.heads = 0
        real_list, real_info = backend.list, backend.info  # type: ignore[attr-defined]

        def listing(*args, **kwargs):
            self.lists += 1
            return real_list(*args, **kwargs)

        def head(*args, **kwargs):
            self.heads += 1
            return real_info(*args, **kwargs)

        monkeypatch.setattr(backend, "list", listing)
        monkeypatch.setattr(backend, "info", head)


def test_the_engine_counts_from_one_listing_and_rehydrates_only_when_asked(
    store, azure_backend, mixed, monkeypatch, tmp_path
):
    path, _data = mixed
    backup(store, "old", path)
    vault = RemoteVault(azure_backend)
    replicate_point(store, vault, "old")
    apply_tiering(vault, ["old"], ARCHIVE)
    calls = CallCounter(monkeypatch, azure_backend)

    state = archive_state(vault, "old")
    assert state.archived == state.total > 0 and state.archived_bytes > 0 and state.rehydrating == 0
    assert 0 < len(state.sample) <= 8 and calls.lists == 1
    assert {info.tier for info in azure_backend.list("chunks/")} == {ARCHIVE}  # counting moved nothing

    before, after = start_rehydration(vault, "old", priority="High")
    assert before.archived == state.archived and after.archived == 0  # Azurite rehydrates at once
    assert calls.lists == 3 and calls.heads == len(state.sample)  # one listing to start, a sample to check
    assert {info.tier for info in azure_backend.list("chunks/")} == {HOT}

    (tmp_path / "dir-vault").mkdir()
    directory = RemoteVault(DirectoryBackend(tmp_path / "dir-vault"))
    assert archive_state(directory, "old").archived == 0  # no tiers: nothing to count, nothing listed


@pytest.mark.django_db
def test_the_cache_is_checked_again_on_its_sample_at_most_every_ten_minutes(
    settings, tmp_path, azurite, azure_backend, helpdesk, monkeypatch
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    point = counted(archived_vault_point(tmp_path / "store", helpdesk))
    sample = list(point.archive_sample)
    for name in sample:  # as if Azure had finished a rehydration of the sample
        azure_backend.set_tier(name, HOT)

    from vault.engine.azure_blob import AzureBlobBackend

    calls = CallCounter(monkeypatch, AzureBlobBackend)
    notice = archive.notice(point)
    assert notice is not None and notice.archived == point.archived_chunks  # checked just now: the cache holds
    assert (calls.lists, calls.heads) == (0, 0)

    RecoveryPoint.objects.filter(pk=point.pk).update(archive_checked_at=timezone.now() - dt.timedelta(minutes=11))
    point.refresh_from_db()
    assert archive.notice(point) is None  # the sample is online again: the point may be read
    assert calls.lists == 0 and calls.heads == len(sample) > 0
    point.refresh_from_db()
    assert point.archived_chunks == 0


@pytest.mark.django_db
def test_the_action_audits_what_it_started_and_refuses_what_it_cannot(
    settings, tmp_path, azurite, azure_backend, helpdesk
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    point = counted(archived_vault_point(tmp_path / "store", helpdesk))

    with pytest.raises(actions.VaultActionError, match="Standard or High"):
        actions.rehydrate_point(helpdesk, point, priority="Urgent")
    assert chunk_tiers() == {ARCHIVE} and not AuditEntry.objects.filter(action="point.rehydrate").exists()

    after = actions.rehydrate_point(helpdesk, point, priority="Standard")
    assert after.archived == 0 and chunk_tiers() == {HOT}
    entry = AuditEntry.objects.get(action="point.rehydrate")
    assert (entry.actor_name, entry.details["priority"]) == ("bob", "Standard")
    assert entry.details["archived_chunks"] > 0 and entry.details["still_archived"] == 0


@pytest.mark.django_db
def test_the_tiering_job_caches_the_archive_state_of_the_points_it_moved(
    settings, tmp_path, azurite, azure_backend, helpdesk, run_worker, django_capture_on_commit_callbacks
):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    point = archived_vault_point(tmp_path / "store", helpdesk)
    for name in remote_chunk_names():
        azure_backend.set_tier(name, HOT)  # back online: the job will archive them again
    RecoveryPoint.objects.filter(pk=point.pk).update(created=timezone.now() - dt.timedelta(days=40))
    VaultSettings.objects.filter(pk=1).update(tier_after_days=30, tier=VaultSettings.Tier.ARCHIVE)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "tier")
    run_worker()

    point.refresh_from_db()
    assert chunk_tiers() == {ARCHIVE} and point.vault_tier == ARCHIVE
    assert point.archived_chunks and point.archived_chunks > 0 and point.archive_checked_at is not None


def remote_chunk_names() -> list[str]:
    from vault.storage import remote_vault

    return list(remote_vault().chunk_blobs())
