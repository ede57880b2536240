"""`make bench-catalog`: the file catalog at the issue's scale, on a private PostgreSQL.

50 VMs x 20,000 files (1,000,000 files) x 30 recovery points, 1% of each VM's files changed between
points, written through the product's catalog writer (`recovery.catalog.writer.catalogue_point`) from
synthetic listings (a generator, as the real walk of a file system is). Then:

1. Catalog size on disk (table, TOAST and indexes, without VACUUM FULL) against one point's catalog
   (the same after each VM's first point): target <= 2x.
2. Search (`recovery.catalog.search.search`, what the page, the API and the command call) by name
   prefix and by glob across all VMs and points: p50/p95 over varied patterns, target p95 < 1 s.
3. Cataloguing a new point of an unchanged VM: target < 1 s. Of a changed one: entries written per
   second for a point whose every file changed (20,000 new versions, the worst case), target >= 50,000;
   and the time of a 1%-changed point.

    .venv/bin/python tools/bench_catalog.py [--vms 50] [--files 20000] [--points 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.bench_django import django_on_private_postgres  # noqa: E402

WORDS = [
    "budget",
    "invoice",
    "report",
    "minutes",
    "contract",
    "offer",
    "payroll",
    "forecast",
    "summary",
    "notes",
    "draft",
    "letter",
    "memo",
    "plan",
    "review",
    "agenda",
    "presentation",
    "schedule",
    "inventory",
    "audit",
    "policy",
    "manual",
    "backup",
    "export",
    "import",
    "archive",
    "photo",
    "scan",
    "receipt",
    "order",
    "quote",
    "statement",
    "ledger",
    "timesheet",
    "roadmap",
    "design",
    "spec",
    "proposal",
    "survey",
    "training",
    "handbook",
    "checklist",
    "template",
    "newsletter",
    "brochure",
    "catalog",
    "pricelist",
    "license",
    "certificate",
]
EXTENSIONS = ("docx", "xlsx", "pdf", "txt", "jpg", "pptx", "csv", "log")
BASE_TIME = dt.datetime(2024, 1, 15, 9, 30, tzinfo=dt.UTC)
FILES_PER_FOLDER = 50


class Listing:
    """One VM's synthetic volume: fixed paths, and per file the point at which it last changed."""

    def __init__(self, seed: int, files: int) -> None:
        rng = random.Random(seed)
        folders = max(1, files // FILES_PER_FOLDER)
        self.folders = [f"/Users/user{n % 20:02d}/{rng.choice(WORDS).title()}-{n:04d}" for n in range(folders)]
        self.paths = [
            f"{self.folders[i % folders]}/{rng.choice(WORDS)}-{i:05d}.{rng.choice(EXTENSIONS)}"
            for i in range(files - folders)
        ]
        self.sizes = [rng.randrange(1_000, 5_000_000) for _ in self.paths]
        self.changed_at = [0] * len(self.paths)
        self.seed = seed

    def advance(self, point: int, share: float) -> None:
        """Point `point` changes `share` of the files (a different sample each time)."""
        rng = random.Random(self.seed * 1000 + point)
        for i in rng.sample(range(len(self.paths)), int(len(self.paths) * share)):
            self.changed_at[i] = point

    def entries(self) -> Iterator[Any]:
        from recovery.catalog.writer import CatalogEntry

        for folder in self.folders:
            yield CatalogEntry(folder, True, 0, BASE_TIME, "S-1-5-32-544")
        times = [BASE_TIME + dt.timedelta(hours=n) for n in range(max(self.changed_at) + 1)]
        for path, size, changed in zip(self.paths, self.sizes, self.changed_at, strict=True):
            yield CatalogEntry(path, False, size + changed, times[changed], "S-1-5-21-1000")


def catalogue(point: Any, listing: Listing) -> tuple[float, Any]:
    from recovery.catalog.writer import VolumeListing, catalogue_point

    started = time.perf_counter()
    result = catalogue_point(point, [VolumeListing(2000, 2, listing.entries(), "Windows", "ntfs")])
    return time.perf_counter() - started, result


def catalog_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' "
            "AND c.relname IN ('recovery_catalogpath', 'recovery_catalogversion', 'recovery_catalogvolume', "
            "'recovery_catalogpoint', 'recovery_catalogvm')"
        )
        return int(cursor.fetchone()[0])


def setup_vms(count: int, points: int) -> list[tuple[Any, list[Any]]]:
    """VMs with `points` recovery point rows each (no store data: the listings are synthetic)."""
    from inventory.models import Datacenter, Folder, VCenter, VirtualMachine
    from vault.models import RecoveryPoint

    vc = VCenter(name="bench", host="bench.example.com", username="u")
    vc.password = "bench-only"  # noqa: S105 (a throwaway database)
    vc.save()
    dc = Datacenter.objects.create(vcenter=vc, moref="datacenter-1", name="DC")
    root = Folder.objects.create(vcenter=vc, moref="group-v1", name="vm", datacenter=dc, path="DC", is_root=True)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    made = []
    for n in range(count):
        vm = VirtualMachine.objects.create(
            vcenter=vc, instance_uuid=f"bench-{n}", moref=f"vm-{n}", name=f"vm-{n:03d}", datacenter=dc,
            folder=root, path=f"DC/vm-{n:03d}", power_state="poweredOn",
        )  # fmt: skip
        rows = [
            RecoveryPoint(
                vm=vm, created=start + dt.timedelta(days=p), completed=start + dt.timedelta(days=p), consistency="crash"
            )
            for p in range(points + 2)  # two more for the unchanged and the all-changed measurements
        ]
        made.append((vm, RecoveryPoint.objects.bulk_create(rows)))
    return made


def search_times(user: Any, queries: list[str]) -> tuple[float, float, int]:
    from recovery.catalog import search

    samples, hits = [], 0
    for query in queries:
        started = time.perf_counter()
        hits += len(search.search(user, query).hits)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], hits


def run(vm_count: int, files: int, points: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    total_started = time.perf_counter()
    vms = setup_vms(vm_count, points)
    listings = [Listing(n, files) for n in range(vm_count)]
    print(f"Catalog benchmark: {vm_count} VMs x {files:,} files x {points} points, 1% changed per point")

    first_started = time.perf_counter()
    for (_vm, rows), listing in zip(vms, listings, strict=True):
        catalogue(rows[0], listing)
    first_seconds = time.perf_counter() - first_started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE recovery_catalogpath, recovery_catalogversion")
    one_point = catalog_bytes()
    print(f"  first point of every VM: {vm_count * files:,} entries in {first_seconds:.1f} s")

    later_started, later = time.perf_counter(), []
    for p in range(1, points):
        for (_vm, rows), listing in zip(vms, listings, strict=True):
            listing.advance(p, 0.01)
            later.append(catalogue(rows[p], listing)[0])
    print(
        f"  points 2..{points}: {len(later)} points catalogued in {time.perf_counter() - later_started:.1f} s "
        f"(1% changed: median {statistics.median(later) * 1000:.0f} ms a point)"
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE recovery_catalogpath, recovery_catalogversion")
    full = catalog_bytes()

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    rng = random.Random(7)
    prefixes = [f"{rng.choice(WORDS)}{rng.choice(['', '-0', '-1', '-00'])}*" for _ in range(40)]
    globs = [f"*-{rng.randrange(100):02d}?*.{rng.choice(EXTENSIONS)}" for _ in range(20)]
    globs += [f"{rng.choice(WORDS)[:3]}*.{rng.choice(EXTENSIONS)}" for _ in range(10)]
    globs += [f"*.{ext}" for ext in EXTENSIONS] + [f"*{rng.choice(WORDS)}*" for _ in range(2)]
    search_times(user, prefixes[:5])  # warm the cache, as a running server is
    prefix_p50, prefix_p95, prefix_hits = search_times(user, prefixes)
    glob_p50, glob_p95, glob_hits = search_times(user, globs)

    vm, rows = vms[0]
    unchanged_seconds, _ = catalogue(rows[points], listings[0])
    listings[0].advance(points + 1, 1.0)
    changed_seconds, changed = catalogue(rows[points + 1], listings[0])
    rate = changed.new_versions / changed_seconds

    versions = _count("SELECT count(*) FROM recovery_catalogversion")
    print(f"  versions stored: {versions:,} for {vm_count * files * points:,} file-point pairs")
    print(
        f"catalog on disk: {full / 2**20:,.0f} MiB after {points} points vs {one_point / 2**20:,.0f} MiB "
        f"for one point: {full / one_point:.2f}x (target <= 2x)"
    )
    print(
        f"search by name prefix ({len(prefixes)} patterns, e.g. {prefixes[0]}): p50 {prefix_p50 * 1000:.0f} ms, "
        f"p95 {prefix_p95 * 1000:.0f} ms (target p95 < 1000 ms)"
    )
    print(
        f"search by glob ({len(globs)} patterns, e.g. {globs[0]}, {globs[-3]}): p50 {glob_p50 * 1000:.0f} ms, "
        f"p95 {glob_p95 * 1000:.0f} ms (target p95 < 1000 ms)"
    )
    print(f"cataloguing a new point of an unchanged VM ({files:,} entries): {unchanged_seconds * 1000:.0f} ms (< 1 s)")
    print(
        f"cataloguing a point whose {changed.new_versions:,} files all changed: {changed_seconds * 1000:.0f} ms, "
        f"{rate:,.0f} changed entries/s (target >= 50,000)"
    )
    typical = statistics.median(later)
    print(
        f"cataloguing a 1%-changed point: median {typical * 1000:.0f} ms, {files / typical:,.0f} entries/s "
        f"({files // 100:,} of them changed)"
    )
    print(f"total benchmark time: {time.perf_counter() - total_started:.0f} s")


def _count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=30)
    args = parser.parse_args()
    with django_on_private_postgres():
        run(args.vms, args.files, args.points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
