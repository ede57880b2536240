"""The overview: numbers that link to the lists behind them, RPO breaches, off-site lag, growth chart."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from jobs.models import JobRun
from tests.factories.protection import protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint, StorageSample, VaultSettings
from vault.usage import record_storage_sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def estate(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    folders = create_test_tree(create_test_vcenter(), ["Prod", "Test"])
    protected = create_test_vm(folders["Prod"], "app-01")
    create_test_vm(folders["Test"], "lonely-01")
    create_test_vm(folders["Test"], "gone-01", removed_at=timezone.now())
    protect_vms("Prod", [protected])
    for status in ("succeeded", "succeeded", "failed", "errored", "running"):
        JobRun.objects.create(kind="protection.backup", title="Back up", status=status)
    JobRun.objects.create(
        kind="protection.backup", title="old", status="failed", created=timezone.now() - dt.timedelta(days=2)
    )
    return protected


def test_numbers_link_to_the_filtered_lists_behind_them(estate, as_admin):
    body = as_admin.get("/").content.decode()
    for link in (
        "/inventory/?protection=protected",
        "/inventory/?protection=unprotected",
        "/inventory/?protection=removed",
        "/jobs/?kind=protection.backup&hours=24&status=failed_any",
    ):
        assert link in body, link
    jobs = as_admin.get("/jobs/", {"kind": "protection.backup", "hours": 24, "status": "failed_any"}).content.decode()
    assert jobs.count('data-status="failed"') + jobs.count('data-status="errored"') == 2
    removed = as_admin.get("/inventory/", {"protection": "removed"}).content.decode()
    assert "gone-01" in removed and "app-01" not in removed


def test_the_last_day_of_backups_is_counted_by_outcome(estate, as_admin):
    from dashboard.queries import overview

    numbers = overview()
    assert numbers["backups"] == {"succeeded": 2, "failed": 2, "running": 1}
    assert (numbers["protected"], numbers["unprotected"], numbers["removed"]) == (1, 1, 1)


def test_rpo_breaches_and_points_not_off_site_show_when_they_happen(estate, tmp_path):
    from dashboard.queries import overview

    later = timezone.now() + dt.timedelta(days=2)
    assert overview(later)["rpo_breached"] == 1
    RecoveryPoint.objects.create(
        vm=estate,
        group=estate.protection_group,
        created=later - dt.timedelta(hours=1),
        completed=later,
        consistency="crash",
    )
    assert overview(later)["rpo_breached"] == 0
    root = tmp_path / "vault"
    root.mkdir()
    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": str(root)})
    numbers = overview(later)
    assert numbers["not_offsite"] == 1 and numbers["oldest_not_offsite"].vm == estate


def test_the_growth_chart_is_drawn_from_daily_samples(estate, as_admin):
    today = timezone.localdate()
    for back, size in ((20, 100), (10, 300), (0, 900)):
        StorageSample.objects.create(
            day=today - dt.timedelta(days=back), local_bytes=size * 2**20, vault_bytes=size * 2**19, logical_bytes=0
        )
    body = as_admin.get("/").content.decode()
    assert "<svg" in body and "Storage over the last 30 days" in body and "polyline" in body
    assert "900.0 MB" in body or "900.0 MB" in body.replace("\xa0", " ")


def test_the_hourly_sample_records_today(estate):
    sample = record_storage_sample()
    assert sample.day == timezone.localdate() and StorageSample.objects.count() == 1


def test_the_numbers_refresh_in_place(estate, as_auditor):
    fragment = as_auditor.get("/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="numbers"') and 'hx-trigger="every 30s"' in fragment
