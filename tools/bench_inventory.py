"""`make bench-inventory`: full sync of a simulated vCenter with 10,000 VMs in 100 folders, and
the VM list page's server time at that size.

Prints: sync seconds (read from vCenter and write to the database, separately), peak RSS, SQL
queries for 1,000 and for 10,000 VMs (they must not grow with the VM count), vCenter round
trips, and the list page's median server time for a few typical requests.
Targets on a 2-core machine: sync < 60 s, RSS < 1 GiB, list page < 200 ms.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.bench_django import django_on_private_postgres  # noqa: E402
from tools.bench_specs import bulk_spec  # noqa: E402
from tools.simulator import Simulator  # noqa: E402


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def counting_queries():
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        yield counter


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(vc_name: str, sim: Simulator) -> dict[str, float]:
    from inventory import vcenter as vsphere
    from inventory.models import VCenter
    from inventory.sync import apply_inventory

    vc = VCenter(name=vc_name, host=sim.host, port=sim.port, protocol="http", username=sim.username, verify_tls=False)
    vc.password = sim.password
    vc.save()
    started = time.perf_counter()
    with vsphere.connect(vsphere.Endpoint(sim.host, sim.port, protocol="http"), sim.username, sim.password) as conn:
        inventory = vsphere.fetch_inventory(conn)
    read = time.perf_counter() - started
    with counting_queries() as queries:
        write_started = time.perf_counter()
        result = apply_inventory(vc, inventory)
        write = time.perf_counter() - write_started
    return {
        "vms": result.vms_seen,
        "read_s": read,
        "write_s": write,
        "total_s": read + write,
        "queries": queries.count,
        "round_trips": inventory.round_trips,
    }


def list_page_times(runs: int = 15) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from inventory.models import Folder

    user = get_user_model().objects.create_superuser("bench", password=None)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    folder = Folder.objects.filter(is_root=False).order_by("path").first()
    requests = {
        "first page, by name": {},
        "search 'F05'": {"q": "F05"},
        "folder subtree": {"folder": folder.pk},
        "unprotected, page 100": {"protection": "unprotected", "page": 100},
        "htmx list fragment": {"q": "vm-F0"},
    }
    timings = {}
    for label, params in requests.items():
        headers = {"HX-Request": "true"} if label.startswith("htmx") else {}
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get("/inventory/", params, headers=headers)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        timings[label] = statistics.median(samples)
    return timings


def main() -> int:
    with django_on_private_postgres() as work:
        print("Inventory benchmark (vcsim, PostgreSQL, this machine)")
        results = {}
        for folders, per_folder in ((10, 100), (100, 100)):
            with Simulator.start(bulk_spec(folders, per_folder), workdir=work / f"sim-{folders}") as sim:
                results[folders * per_folder] = sync(f"bench-{folders}", sim)
        small, big = results[1000], results[10000]
        rss = peak_rss_mib()
        print(f"{'VMs':>8} {'read s':>8} {'write s':>8} {'total s':>8} {'queries':>8} {'round trips':>12}")
        for vms, r in results.items():
            print(
                f"{vms:>8} {r['read_s']:>8.1f} {r['write_s']:>8.1f} {r['total_s']:>8.1f} {r['queries']:>8} "
                f"{r['round_trips']:>12}"
            )
        print(f"full sync of 10,000 VMs: {big['total_s']:.1f} s (target < 60 s)")
        print(f"peak RSS: {rss:.0f} MiB (target < 1024 MiB)")
        print(f"SQL queries: {small['queries']} for 1,000 VMs, {big['queries']} for 10,000 VMs (must not grow per VM)")
        print("VM list page at 11,000 VMs, median server time (target < 200 ms):")
        for label, ms in list_page_times().items():
            print(f"  {label:<24} {ms:7.1f} ms")
        print("Peer: Azure Backup Server discovers new VMs once a day; here changes apply live (see tests).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
