"""A point only the vault (Azurite) holds, its chunks in the Archive tier: a whole-VM restore and a
vault verify refuse before changing anything (no VM created or powered off, nothing verified), with
one sentence saying how many chunks are archived and the three ways to rehydrate; the Restore VM
page shows the archive panel instead of its form; a zip or download of such a point the cache knew
nothing about is refused before its response starts. Nothing of it starts a rehydration: Azurite
rehydrates at once, so every chunk staying in Archive proves none was asked for."""

from __future__ import annotations

import random
import shutil

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from inventory import vcenter as vsphere
from jobs.models import JobRun
from recovery import browse, downloads
from recovery.models import Restore, RestoreGrant
from tests.factories.archive import archived_vault_point, chunk_tiers, counted, use_azure_vault
from tests.factories.people import token_client
from tests.factories.protection import protect_vms, start_backup_lab
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.recovery.test_vm_restore import connect, new_vm_target
from tools import diskimages
from vault import archive, engine
from vault.engine.azure_blob import AzureBlobBackend
from vault.engine.blobs import ARCHIVE
from vault.jobs import enqueue_verify
from vault.models import VAULT_TIER, RecoveryPoint
from vault.storage import local_store, remote_vault

pytestmark = pytest.mark.django_db


def assert_refused_sentence(text: str, point: RecoveryPoint) -> None:
    point.refresh_from_db()
    assert point.archived_chunks and f"{point.archived_chunks} chunk" in text, text
    assert "Archive tier" in text and "up to 15 hours" in text
    assert f"POST /api/v1/points/{point.pk}/rehydrate/" in text
    assert f"manage.py vault rehydrate {point.pk} --yes" in text and "Rehydrate button" in text


@pytest.fixture
def lab_point(vcsim_factory, settings, tmp_path, azurite, azure_backend, backed_up):
    """lnx-01 of the backup lab, backed up, replicated to Azurite, lost locally, counted (none
    archived), then its chunks archived: the cache is out of date, so only the job's count sees them."""
    lab = start_backup_lab(vcsim_factory, settings, tmp_path)
    point = backed_up("lnx-01")
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    engine.replicate_point(local_store(), remote_vault(), str(point.pk))
    RecoveryPoint.objects.filter(pk=point.pk).update(vault_status="replicated", local=False)
    shutil.rmtree(settings.BACKUP_STORE_DIR)
    archive.record_states(remote_vault(), [point])
    engine.apply_tiering(remote_vault(), [str(point.pk)], ARCHIVE)
    point.refresh_from_db()
    return lab, point


def test_a_whole_vm_restore_of_an_archived_point_refuses_before_touching_any_vm(lab_point, restored, admin):
    lab, point = lab_point
    with connect(lab.sim) as conn:
        power_before = vsphere.power_state(conn, point.vm.moref)
        vms_before = {vm.name for vm in vsphere.list_vms(conn, with_disks=False)}

    over = restored(point, {"mode": "overwrite"}, admin)
    new = restored(point, new_vm_target("lnx-01 restored"), admin)

    for run in (over, new):
        assert run.status == JobRun.Status.FAILED
        assert "nothing was restored or changed" in run.error
        assert_refused_sentence(run.error, point)
    with connect(lab.sim) as conn:
        assert vsphere.power_state(conn, point.vm.moref) == power_before
        assert {vm.name for vm in vsphere.list_vms(conn, with_disks=False)} == vms_before
    assert set(Restore.objects.values_list("status", flat=True)) == {"failed"}
    assert chunk_tiers() == {ARCHIVE}
    assert not AuditEntry.objects.filter(action="point.rehydrate").exists()


def test_the_restore_vm_page_shows_the_archive_panel_instead_of_a_restore_it_would_refuse(lab_point, admin, as_admin):
    _lab, point = lab_point
    point = counted(point)
    url = f"/recovery/points/{point.pk}/restore-vm/"

    page = as_admin.get(url)
    text = page.content.decode()
    assert page.status_code == 200 and "Rehydrate this point" in text and f"{point.archived_chunks} chunk" in text
    assert "Start the restore" not in text
    posted = as_admin.post(url, {"mode": "overwrite"})
    assert posted.status_code == 409 and "Rehydrate this point" in posted.content.decode()
    body = {"mode": "overwrite", "confirm": point.vm.name}
    api = token_client(admin).post(f"/api/v1/points/{point.pk}/restore-vm/", body, "application/json")
    assert api.status_code == 409 and "no restore was started" in api.json()["detail"]
    assert_refused_sentence(api.json()["detail"], point)
    assert not JobRun.objects.filter(kind="recovery.restore_vm").exists()
    assert chunk_tiers() == {ARCHIVE}


@pytest.fixture
def archived(settings, tmp_path, azurite, azure_backend, helpdesk) -> RecoveryPoint:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    return archived_vault_point(tmp_path / "store", helpdesk)


def test_a_vault_verify_of_an_archived_point_verifies_nothing_and_says_how_to_rehydrate(
    archived, run_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = enqueue_verify(VAULT_TIER, points=[archived])
    run_worker()
    run.refresh_from_db()

    assert run.status == JobRun.Status.FAILED and "nothing was verified" in run.error
    assert_refused_sentence(run.error, archived)
    assert archived.vault_verified_at is None and not archived.damaged
    assert chunk_tiers() == {ARCHIVE}


def test_a_verify_of_every_vault_point_leaves_out_those_known_archived(archived):
    point = counted(archived)

    run = enqueue_verify(VAULT_TIER, target_label="vault", allow_empty=True)

    assert run.params["point_ids"] == [] and run.target_label == "vault (1 in the Archive tier left out)"
    assert point.archived_chunks and chunk_tiers() == {ARCHIVE}


def test_a_zip_or_download_of_an_archived_point_the_cache_did_not_know_is_refused_before_it_starts(
    archived, helpdesk, as_helpdesk
):
    assert archived.archived_chunks == 0 and archived.archive_checked_at is None  # nothing counted

    page_zip = as_helpdesk.post(f"/recovery/points/{archived.pk}/zip/", {"item": "2000:1:/etc"})
    assert page_zip.status_code == 302 and page_zip["Location"] == f"/recovery/points/{archived.pk}/"
    assert "Rehydrate this point" in as_helpdesk.get(page_zip["Location"]).content.decode()
    api = token_client(helpdesk)
    api_zip = api.post(f"/api/v1/points/{archived.pk}/zip/", {"items": ["2000:1:/etc"]}, "application/json")
    assert api_zip.status_code == 409 and "Archive tier" in api_zip.json()["detail"]
    query = {"disk": 2000, "volume": 1, "path": "/etc/hostname"}
    download = api.get(f"/api/v1/points/{archived.pk}/download/", query)
    assert download.status_code == 409 and "Archive tier" in download.json()["detail"]

    archived.refresh_from_db()
    assert archived.archived_chunks is None  # some archived, known now: later views read nothing
    assert not Restore.objects.exists()  # no download was started, so none is left half-done
    assert chunk_tiers() == {ARCHIVE}


@pytest.fixture
def big_file_point(settings, tmp_path, azurite, azure_backend, helpdesk) -> RecoveryPoint:
    """A vault-only point holding /big.bin (6 MiB, after 7 MiB of another file), counted while all
    its chunks were online: the cache says none are archived."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    use_azure_vault(azurite.connection_string(), azure_backend.container)
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "lnx-01")
    group = protect_vms("Prod", [vm])
    noise = random.Random(14)  # incompressible and unique: every 4 MiB is a chunk of its own
    tree = {"a-first.bin": noise.randbytes(7 * 2**20), "big.bin": noise.randbytes(6 * 2**20)}
    point = point_with_disks(vm, group, {2000: diskimages.build_ext4_disk(tree, size_mib=40)}, timezone.now())
    engine.replicate_point(local_store(), remote_vault(), str(point.pk))
    RecoveryPoint.objects.filter(pk=point.pk).update(vault_status="replicated", local=False)
    shutil.rmtree(tmp_path / "store")
    RestoreGrant.objects.create(user=helpdesk, group=group)
    archive.record_states(remote_vault(), [point])
    point.refresh_from_db()
    assert point.archived_chunks == 0 and point.archive_checked_at is not None
    return point


def archive_all_but(azure_backend, patch: pytest.MonkeyPatch, read_online) -> None:
    """Move every chunk of the vault to Archive except those `read_online()` reads."""
    with patch.context() as reads:
        read = blobs_read(reads)
        read_online()
    for name in set(remote_vault().chunk_blobs()) - read:
        azure_backend.set_tier(name, ARCHIVE)


def test_a_file_whose_data_is_archived_while_its_folders_are_online_is_refused_before_the_download_starts(
    big_file_point, azure_backend, helpdesk, as_helpdesk, monkeypatch
):
    point = big_file_point
    archive_all_but(azure_backend, monkeypatch, lambda: browse.open_filesystem(point, 2000, 1).stat("/big.bin"))

    page = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/file/", {"path": "/big.bin"})
    assert page.status_code == 404  # as for a point the cache knew archived
    query = {"disk": 2000, "volume": 1, "path": "/big.bin"}
    api = token_client(helpdesk).get(f"/api/v1/points/{point.pk}/download/", query)
    assert api.status_code == 409 and "Archive tier" in api.json()["detail"]
    assert not Restore.objects.exists()  # refused before a download was recorded or a byte sent
    point.refresh_from_db()
    assert point.archived_chunks is None  # marked: its pages show the archive panel from now on
    assert ARCHIVE in chunk_tiers()


def test_an_archived_chunk_met_half_way_fails_the_download_row_and_marks_the_point(
    big_file_point, azure_backend, as_helpdesk, monkeypatch
):
    point = big_file_point

    def open_and_read_the_first_piece() -> None:
        browse.open_filesystem(point, 2000, 1).open("/big.bin").read(downloads.PIECE)

    archive_all_but(azure_backend, monkeypatch, open_and_read_the_first_piece)

    response = as_helpdesk.get(f"/recovery/points/{point.pk}/2000/1/file/", {"path": "/big.bin"})
    assert response.status_code == 200
    with pytest.raises(engine.BlobArchived):
        b"".join(response.streaming_content)
    restore = Restore.objects.get()
    assert restore.status == "failed" and "Archive tier" in restore.error
    point.refresh_from_db()
    assert point.archived_chunks is None
    assert "Rehydrate this point" in as_helpdesk.get(f"/recovery/points/{point.pk}/").content.decode()


def blobs_read(patch: pytest.MonkeyPatch) -> set[str]:
    """The names of the blobs Azurite is asked for from now on (whole or a range)."""
    read: set[str] = set()
    for method in ("get", "get_range"):
        real = getattr(AzureBlobBackend, method)

        def reading(self, name, *args, _real=real):
            read.add(name)
            return _real(self, name, *args)

        patch.setattr(AzureBlobBackend, method, reading)
    return read
