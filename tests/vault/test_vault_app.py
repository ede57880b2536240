"""The vault in the product: replication jobs, restore fallback, retention with locks, GC, settings,
encryption keys, the Vault page's permissions and the `vault` command."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import JobRun
from tests.vault import CS, DISK
from tests.vault.app_points import back_up_point, protected_vm, use_directory_vault
from vault import actions, engine
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store, tiered_store

pytestmark = pytest.mark.django_db
NOW = timezone.now()


@pytest.fixture
def store_dir(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    return settings.BACKUP_STORE_DIR


@pytest.fixture
def directory_vault(tmp_path):
    return use_directory_vault(tmp_path / "vault")


@pytest.fixture
def lab(store_dir, tmp_path):
    """A VM in a protection group, and a way to give it recovery points at chosen times."""
    vm, group = protected_vm(local_count=2)
    images: dict[str, bytes] = {}

    def make_point(created: dt.datetime, seed: int = 0, **fields) -> RecoveryPoint:
        point, images_data = back_up_point(vm, group, tmp_path / f"img-{seed}", created, seed, **fields)
        images[str(point.pk)] = images_data
        return point

    return vm, group, make_point, images


def restored(point: RecoveryPoint) -> bytes:
    source = tiered_store()
    out = io.BytesIO()
    engine.restore_disk(source, source.open_point(str(point.pk)).index(DISK), out)
    return out.getvalue()


def replicate(point, run_worker, capture) -> JobRun:
    with capture(execute=True):
        run = actions.enqueue_replication(point)
    run_worker()
    run.refresh_from_db()
    return run


def test_replication_puts_the_point_in_the_vault_and_a_restore_without_the_local_store_reads_it(
    lab, directory_vault, store_dir, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    point = make_point(NOW)

    run = replicate(point, run_worker, django_capture_on_commit_callbacks)

    assert run.status == JobRun.Status.SUCCEEDED, run.error
    point.refresh_from_db()
    assert point.vault_status == "replicated" and point.vault_at and point.vault_bytes > 0
    assert "3 of 3 chunks uploaded" in " ".join(line["msg"] for line in run.log)
    shutil.rmtree(store_dir)  # the backup server's disk is lost
    assert hashlib.sha256(restored(point)).digest() == hashlib.sha256(images[str(point.pk)]).digest()


def test_replication_to_azure_blob_storage(
    lab, store_dir, azurite, run_worker, django_capture_on_commit_callbacks, monkeypatch
):
    vm, group, make_point, images = lab
    monkeypatch.setenv("VAULT_CONN", azurite.connection_string())
    call_command("vault", "configure", "--azure-connection-string-env", "VAULT_CONN", "--container", "e2e-vault")
    config = VaultSettings.current()
    assert config.kind == "azure" and config.secret == azurite.connection_string()
    assert azurite.connection_string() not in json.dumps(list(AuditEntry.objects.values("details")))
    point = make_point(NOW)

    assert replicate(point, run_worker, django_capture_on_commit_callbacks).status == "succeeded"

    out = io.StringIO()
    call_command("vault", "status", "--json", stdout=out)
    status = json.loads(out.getvalue())
    assert status["vault_points"] == 1 and status["replication_backlog"] == 0
    shutil.rmtree(store_dir)
    assert restored(point) == images[str(point.pk)]


def test_a_backup_with_a_replicating_policy_queues_its_replication(lab, directory_vault):
    vm, group, make_point, images = lab
    point = make_point(NOW)
    run = actions.enqueue_replication(point)
    assert run.kind == actions.REPLICATE_KIND and run.params == {"point_ids": [str(point.pk)]}
    point.refresh_from_db()
    assert point.vault_status == "pending"
    assert [p.pk for p in actions.replication_backlog()] == [point.pk]


def test_local_prune_keeps_the_newest_and_locked_points_and_is_audited(lab, store_dir):
    vm, group, make_point, images = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(5)]  # newest first
    actions.lock_point(None, points[4], NOW + dt.timedelta(days=30))

    plan = actions.plan_prune()
    assert sorted(str(i.point.pk) for i in plan.remove) == sorted(str(p.pk) for p in points[2:4])
    done, problems = actions.apply_prune(plan)

    assert not problems and len(done) == 2
    assert set(RecoveryPoint.objects.values_list("pk", flat=True)) == {points[0].pk, points[1].pk, points[4].pk}
    assert set(local_store().list_points()) == {str(points[0].pk), str(points[1].pk), str(points[4].pk)}
    assert AuditEntry.objects.filter(action="point.prune", actor_name="retention").count() == 2


def test_points_wait_for_the_vault_before_leaving_the_server(lab, directory_vault):
    vm, group, make_point, images = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(4)]

    plan = actions.plan_prune()

    assert plan.remove == [] and len(plan.held) == 2
    assert "waiting for its copy in the vault" in plan.held[0].reason
    RecoveryPoint.objects.filter(pk=points[3].pk).update(vault_status="replicated")  # (as if replicated)
    assert [i.point.pk for i in actions.plan_prune().remove] == [points[3].pk]


def test_a_locked_point_survives_the_page_the_command_line_and_the_prune_job(
    lab, store_dir, as_admin, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(4)]
    locked = points[3]
    as_admin.post(f"/vault/points/{locked.pk}/lock/", {"until": (NOW + dt.timedelta(days=400)).date().isoformat()})
    locked.refresh_from_db()
    assert locked.locked_until > NOW + dt.timedelta(days=399)

    response = as_admin.post(f"/vault/points/{locked.pk}/delete/", {"confirm": vm.name}, follow=True)
    assert "retention lock" in response.content.decode()
    with pytest.raises(CommandError, match="retention lock"):
        call_command("vault", "delete", str(locked.pk), "--yes")
    with pytest.raises(CommandError, match="only be extended"):
        call_command("vault", "lock", str(locked.pk)[:8], "--until", (NOW + dt.timedelta(days=10)).date().isoformat())
    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "prune", stdout=io.StringIO())
    run_worker()

    assert RecoveryPoint.objects.filter(pk=locked.pk, local=True).exists()
    assert str(locked.pk) in local_store().list_points()
    assert RecoveryPoint.objects.count() == 3  # the two newest and the locked one
    assert AuditEntry.objects.filter(action="point.lock").count() == 1


def test_unlocked_point_is_deleted_from_every_tier_after_typed_confirmation(
    lab, directory_vault, as_admin, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    point = make_point(NOW)
    replicate(point, run_worker, django_capture_on_commit_callbacks)

    as_admin.post(f"/vault/points/{point.pk}/delete/", {"confirm": "wrong"})
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()
    as_admin.post(f"/vault/points/{point.pk}/delete/", {"confirm": vm.name})

    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
    assert local_store().list_points() == []
    assert not [p for p in (directory_vault / "points").rglob("*") if p.is_file()]
    assert AuditEntry.objects.filter(action="point.delete", actor__username="alice").exists()


def test_garbage_collection_job_frees_what_pruned_points_held(
    lab, store_dir, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    points = [make_point(NOW - dt.timedelta(days=d), seed=d) for d in range(3)]
    actions.apply_prune(actions.plan_prune())
    VaultSettings.objects.update_or_create(pk=1, defaults={"gc_grace_hours": 1})  # the floor
    two_hours_ago = time.time() - 2 * 3600
    for chunk in (store_dir / "chunks").rglob("*"):  # unused long enough for the GC to take them
        if chunk.is_file():
            os.utime(chunk, (two_hours_ago, two_hours_ago))

    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "gc", stdout=io.StringIO())
    run_worker()

    run = JobRun.objects.get(kind="vault.gc")
    assert run.status == "succeeded" and run.result["local"]["chunks_swept"] == 3
    assert run.result["bytes_freed"] > 2 * CS  # two random chunks (stored raw) and a text one
    for point in points[:2]:
        assert engine.verify_point(local_store(), str(point.pk)).ok


def test_prune_preview_lists_what_would_go_with_reasons(lab, store_dir, as_admin, as_auditor):
    vm, group, make_point, images = lab
    for d in range(3):
        make_point(NOW - dt.timedelta(days=d), seed=d)
    for client in (as_admin, as_auditor):
        body = client.get("/vault/prune-preview/", headers={"HX-Request": "true"}).content.decode()
        assert "1 would go" in body and "not kept by any rule" in body and "<html" not in body
    out = io.StringIO()
    call_command("vault", "prune", "--dry-run", stdout=out)
    assert "1 would go, 0 held" in out.getvalue()
    assert RecoveryPoint.objects.count() == 3


@pytest.mark.parametrize(
    "url",
    ["/vault/", "/vault/prune-preview/", "/vault/recovery-services/"],
)
def test_helpdesk_cannot_see_the_vault_even_by_partial_url(as_helpdesk, as_norole, url):
    assert as_helpdesk.get(url).status_code == 403
    assert as_norole.get(url).status_code == 403


@pytest.mark.parametrize(
    "url",
    ["/vault/start/gc/", "/vault/start/prune/", "/vault/settings/", "/vault/key/create/"],
)
def test_auditors_look_but_change_nothing(as_auditor, url):
    assert as_auditor.get("/vault/").status_code == 200
    assert as_auditor.post(url).status_code == 403
    assert not JobRun.objects.exists() and not VaultSettings.objects.filter(kind__in=["azure", "directory"]).exists()


def test_an_unreachable_azure_account_is_refused_and_nothing_changes(as_admin, db):
    form = {
        "kind": "azure",
        "auth": "connection_string",
        "secret": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        "container": "vmbackup",
        "upload_threads": 4,
        "tier": "Cool",
        "gc_grace_hours": 24,
    }
    response = as_admin.post("/vault/settings/", form)

    body = response.content.decode()
    assert response.status_code == 200 and "The vault cannot be used" in body
    assert "c2VjcmV0" not in body
    assert VaultSettings.current().kind == "none" and not VaultSettings.current().secret_encrypted
    assert not AuditEntry.objects.filter(action="vault.settings").exists()


def test_a_directory_vault_is_saved_and_the_secret_is_never_rendered(as_admin, tmp_path, db):
    root = tmp_path / "v"
    root.mkdir()
    form = {"kind": "directory", "directory": str(root), "container": "vmbackup", "auth": "connection_string"}
    form |= {"upload_threads": 2, "tier": "Cool", "gc_grace_hours": 24, "secret": "not-needed-but-secret"}
    response = as_admin.post("/vault/settings/", form)
    assert response.status_code == 302
    assert VaultSettings.current().directory == str(root)
    page = as_admin.get("/vault/").content.decode()
    assert "not-needed-but-secret" not in page and f"directory {root}" in page
    entry = AuditEntry.objects.get(action="vault.settings")
    assert entry.details["changes"]["secret"] == ["(hidden)", "(changed)"]


def test_missing_directory_is_a_clear_error(as_admin, tmp_path, db):
    form = {"kind": "directory", "directory": str(tmp_path / "absent"), "container": "vmbackup"}
    form |= {"auth": "connection_string", "upload_threads": 2, "tier": "Cool", "gc_grace_hours": 24}
    body = as_admin.post("/vault/settings/", form).content.decode()
    assert "does not exist" in body and VaultSettings.current().kind == "none"


def test_encryption_key_is_shown_once_with_a_warning_and_refused_once_points_are_in_the_vault(
    lab, directory_vault, as_admin, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    body = as_admin.post("/vault/key/create/").content.decode()
    config = VaultSettings.current()
    assert config.encrypted and config.encryption_key in body and "a lost key means lost backups" in body
    assert config.encryption_key not in as_admin.get("/vault/").content.decode()
    assert config.key_fingerprint in as_admin.get("/vault/").content.decode()

    point = make_point(NOW)
    assert replicate(point, run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    manifest = (directory_vault / "points" / str(point.pk) / "manifest.json").read_bytes()
    assert b"app-01" not in manifest  # sealed
    assert restored(point) == images[str(point.pk)]
    response = as_admin.post("/vault/key/create/", follow=True)
    assert "only be turned on for an empty vault" in response.content.decode()
    assert AuditEntry.objects.filter(action="vault.key.created").count() == 1


def test_verify_of_vault_copies_marks_the_point(lab, directory_vault, run_worker, django_capture_on_commit_callbacks):
    vm, group, make_point, images = lab
    point = make_point(NOW)
    replicate(point, run_worker, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "verify", "--vault", stdout=io.StringIO())
    run_worker()
    point.refresh_from_db()
    assert point.vault_verified_at and not point.damaged

    chunk = next(p for p in (directory_vault / "chunks").rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\0")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("vault", "verify", "--vault", stdout=io.StringIO())
    run_worker()
    point.refresh_from_db()
    # Found, then repaired at once from the good local copy: the damage stays on record.
    assert not point.damaged and point.repaired_at and point.damage[0].startswith("vault:")


def test_every_verify_entry_point_queues_the_points_held_in_its_tier(lab, as_admin):
    vm, group, make_point, images = lab
    older, newer = make_point(NOW - dt.timedelta(days=1), seed=1), make_point(NOW, seed=2)
    out = io.StringIO()

    call_command("verify", "app-01", stdout=out)
    call_command("vault", "verify", str(newer.pk)[:8], stdout=io.StringIO())
    page = as_admin.post("/vault/start/verify/")
    with pytest.raises(CommandError, match="No recovery point to verify in the vault tier"):
        call_command("vault", "verify", "--vault", stdout=io.StringIO())
    vault_page = as_admin.post("/vault/start/verify-vault/")  # the button always starts one, even with nothing

    runs = list(JobRun.objects.filter(kind="vault.verify").order_by("created"))
    assert [(run.params["tier"], sorted(run.params["point_ids"]), run.target_label) for run in runs] == [
        ("local", sorted([str(older.pk), str(newer.pk)]), "app-01"),
        ("local", [str(newer.pk)], "1 point(s)"),
        ("local", sorted([str(older.pk), str(newer.pk)]), "vault"),
        ("vault", [], "vault"),
    ]
    assert out.getvalue().startswith("Verifying 2 point(s) (job ")
    assert page.url == f"/jobs/{runs[2].pk}/" and vault_page.url == f"/jobs/{runs[3].pk}/"


def test_vault_page_shows_where_each_point_is(
    lab, directory_vault, as_admin, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    old = make_point(NOW - dt.timedelta(days=1), seed=1)
    make_point(NOW, seed=2)
    replicate(old, run_worker, django_capture_on_commit_callbacks)
    body = as_admin.get("/vault/").content.decode()
    assert body.count("✔ local") == 2 and body.count("✔ vault") == 1 and "not in vault" in body
    assert "waiting for the vault" in body


def test_lagging_replications_are_queued_once(lab, directory_vault):
    from vault.jobs import enqueue_lagging_replications

    vm, group, make_point, images = lab
    make_point(NOW)
    assert enqueue_lagging_replications() == 1
    assert enqueue_lagging_replications() == 0  # one is queued already
    VaultSettings.objects.filter(pk=1).update(kind="none")
    assert enqueue_lagging_replications() == 0


def test_moving_the_vault_replicates_every_point_again(
    lab, directory_vault, tmp_path, run_worker, django_capture_on_commit_callbacks
):
    vm, group, make_point, images = lab
    point = make_point(NOW)
    replicate(point, run_worker, django_capture_on_commit_callbacks)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    call_command("vault", "configure", "--directory", str(elsewhere), stdout=io.StringIO())

    point.refresh_from_db()
    assert point.vault_status == "none" and [p.pk for p in actions.replication_backlog()] == [point.pk]
    entry = AuditEntry.objects.get(action="vault.settings", actor_name="command line")
    assert entry.details["changes"]["points_to_replicate_again"] == [None, 1]
