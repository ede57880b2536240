"""The file catalog: written by a job after a real backup, one version per distinct file state over a
range of points, narrowed or removed when points are deleted, and filled for old points by the
backfill. Real ext4 images in the store; search through recovery.catalog.search."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from jobs.models import JobRun
from jobs.runner import enqueue
from recovery.catalog import jobs as catalog_jobs
from recovery.catalog import search
from recovery.models import CatalogPath, CatalogPoint, CatalogVersion
from tests.factories.protection import back_up, protect_vms, start_backup_lab
from tests.factories.recovery import point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages
from vault import actions as vault_actions

pytestmark = pytest.mark.django_db

FIRST = {"etc": {"hostname": "web01\n", "motd": "hello\n"}, "home": {"bob": {"report-2024.txt": "v1\n"}}}
SECOND = {"etc": {"hostname": "web01\n", "motd": "hello\n"}, "home": {"bob": {"report-2024.txt": "version 2\n"}}}
THIRD = {"etc": {"hostname": "web01\n"}, "home": {"bob": {"report-2024.txt": "version 2\n"}}}


@pytest.fixture
def vm(settings, tmp_path):
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Finance"])
    machine = create_test_vm(folders["Finance"], "lnx-01")
    protect_vms("Finance", [machine])
    machine.refresh_from_db()
    return machine


def make_point(vm, tree, days_ago: float):
    image = diskimages.build_ext4_disk(tree, size_mib=16)
    return point_with_disks(vm, vm.protection_group, {2000: image}, timezone.now() - dt.timedelta(days=days_ago))


def hit_for(user, query: str, path: str):
    result = search.search(user, query)
    found = [hit for hit in result.hits if hit.path == path]
    assert len(found) == 1, [hit.path for hit in result.hits]
    return found[0]


def test_a_point_backed_up_through_the_real_path_is_catalogued_by_its_job(
    vcsim_factory, settings, tmp_path, run_worker, django_capture_on_commit_callbacks, admin
):
    start_backup_lab(vcsim_factory, settings, tmp_path)

    # The outer capture queues what the backup job queued when it committed (the catalog job).
    with django_capture_on_commit_callbacks(execute=True):
        run = back_up("lnx-01", run_worker, django_capture_on_commit_callbacks)
    run_worker()

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    catalog_run = JobRun.objects.get(kind=catalog_jobs.CATALOG_VM_KIND)
    assert catalog_run.status == JobRun.Status.SUCCEEDED, (catalog_run.error, catalog_run.traceback)
    entry = CatalogPoint.objects.get(point__vm__name="lnx-01")
    assert entry.status == CatalogPoint.Status.CATALOGUED and entry.entries > 5
    hit = hit_for(admin, "hostname", "/etc/hostname")
    assert hit.vm.name == "lnx-01" and [version.points for version in hit.versions] == [[entry.point]]
    assert hit.versions[0].size == len("web01\n")


def test_a_changed_file_has_a_version_per_state_and_an_unchanged_one_spans_both_points(vm, admin):
    first, second = make_point(vm, FIRST, 2), make_point(vm, SECOND, 1)

    catalog_jobs.catalogue_vm(None, vm.pk)

    changed = hit_for(admin, "report-2024.txt", "/home/bob/report-2024.txt")
    assert [(v.size, v.points) for v in changed.versions] == [(len("version 2\n"), [second]), (3, [first])]
    unchanged = hit_for(admin, "motd", "/etc/motd")
    assert [v.points for v in unchanged.versions] == [[second, first]]
    assert CatalogVersion.objects.filter(path__path="/etc/motd").count() == 1  # stored once for both points
    assert CatalogVersion.objects.filter(path__path="/home/bob/report-2024.txt").count() == 2


@pytest.mark.parametrize(
    "query",
    ["report", "REPORT-2024", "report*", "*.txt", "rep?rt-[0-9]*.txt", "bob/report", "home/*/report-*", "/home/bob/*"],
)
def test_search_by_name_glob_or_path_fragment_finds_the_file(vm, admin, query):
    make_point(vm, FIRST, 2)
    catalog_jobs.catalogue_vm(None, vm.pk)

    assert "/home/bob/report-2024.txt" in {hit.path for hit in search.search(admin, query).hits}


@pytest.mark.parametrize("query", ["*.csv", "report", "/bob/*", "x_y", "100%"])
def test_patterns_that_do_not_match_find_nothing(vm, admin, query):
    make_point(vm, {"home": {"bob": {"notes.txt": "a\n"}}, "xay": "b\n", "1000": "c\n"}, 1)
    catalog_jobs.catalogue_vm(None, vm.pk)

    assert search.search(admin, query).hits == []


def test_deleting_a_point_removes_its_versions_and_leaves_the_others(vm, admin):
    first, second, third = make_point(vm, FIRST, 3), make_point(vm, SECOND, 2), make_point(vm, THIRD, 1)
    catalog_jobs.catalogue_vm(None, vm.pk)
    assert [v.points for v in hit_for(admin, "motd", "/etc/motd").versions] == [[second, first]]

    vault_actions.delete_point(admin, second)

    report = hit_for(admin, "report-2024", "/home/bob/report-2024.txt")
    assert [v.points for v in report.versions] == [[third], [first]]
    assert [v.points for v in hit_for(admin, "motd", "/etc/motd").versions] == [[first]]
    vault_actions.delete_point(admin, first)
    assert search.search(admin, "motd").hits == []
    assert [v.points for v in hit_for(admin, "report", "/home/bob/report-2024.txt").versions] == [[third]]
    vault_actions.delete_point(admin, third)
    assert not CatalogVersion.objects.exists() and not CatalogPath.objects.exists()


def test_deleting_the_newest_point_makes_the_one_before_current_again(vm, admin):
    first, second = make_point(vm, SECOND, 3), make_point(vm, THIRD, 2)
    catalog_jobs.catalogue_vm(None, vm.pk)
    vault_actions.delete_point(admin, second)

    third = make_point(vm, SECOND, 1)  # the same files as the first point
    catalog_jobs.catalogue_vm(None, vm.pk)

    assert [v.points for v in hit_for(admin, "motd", "/etc/motd").versions] == [[third, first]]
    assert CatalogVersion.objects.filter(path__path="/etc/motd").count() == 1


def test_the_backfill_job_catalogues_existing_points_and_an_older_point_rebuilds_the_vm(
    vm, admin, run_worker, django_capture_on_commit_callbacks
):
    first, second = make_point(vm, FIRST, 3), make_point(vm, SECOND, 2)
    with django_capture_on_commit_callbacks(execute=True):
        run = enqueue(catalog_jobs.BACKFILL_KIND)
    run_worker()
    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert run.result["points"] == 2

    adopted = make_point(vm, THIRD, 10)  # older than both, e.g. adopted by the reconciler
    catalog_jobs.catalogue_vm(None, vm.pk)

    hit = hit_for(admin, "report-2024", "/home/bob/report-2024.txt")
    assert [v.points for v in hit.versions] == [[second], [first], [adopted]]
    assert CatalogPoint.objects.filter(seq__isnull=False).count() == 3


def test_a_point_held_only_in_the_vault_is_not_opened(vm):
    point = make_point(vm, FIRST, 1)
    point.local = False
    point.save()

    catalog_jobs.catalogue_vm(None, vm.pk)

    entry = CatalogPoint.objects.get(point=point)
    assert entry.status == CatalogPoint.Status.UNAVAILABLE and "vault" in entry.note
    assert not CatalogVersion.objects.exists() and not CatalogPath.objects.exists()


def test_a_volume_that_no_longer_opens_is_not_in_the_point_and_later_points_still_catalogue(vm, admin, tmp_path):
    first = make_point(vm, FIRST, 3)
    bad = tmp_path / "bad.img"
    data = bytearray(diskimages.build_ext4_disk(FIRST, size_mib=16).read_bytes())
    data[1024 * 1024 : 1024 * 1024 + 8192] = b"\xa5" * 8192  # the partition's superblock
    bad.write_bytes(bytes(data))
    broken = point_with_disks(vm, vm.protection_group, {2000: bad}, timezone.now() - dt.timedelta(days=2))
    third = make_point(vm, FIRST, 1)

    catalog_jobs.catalogue_vm(None, vm.pk)

    assert CatalogPoint.objects.get(point=broken).status == CatalogPoint.Status.CATALOGUED
    assert [v.points for v in hit_for(admin, "motd", "/etc/motd").versions] == [[third], [first]]
