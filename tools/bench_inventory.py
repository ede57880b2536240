"""`make bench-inventory`: the largest vCenters (issue 18 item 4). Full syncs of simulated vCenters
with 1,000, 10,000 and 50,000 VMs (the last in 1,000 folders, tools.bench_specs.bulk_spec(1000, 50)),
the VM list page's server time at that size, and live changes applied by the inventory watcher.

Prints, per size: how long the simulator took to start, sync seconds (read from vCenter and write to
the database, separately), the sync's peak RSS (each sync runs in a fresh process, so a smaller one
does not hide a larger one), SQL queries (a fixed part plus one INSERT per 1,000 VMs and per 1,000
disks: the fixed part must be equal at every size) and vCenter round trips. Then the list page's
median server time for the usual requests and two deep pages, and, with inventory.watcher running
against the 50,000-VM simulator (the code path `make run` uses), how long after a change made in
vCenter (rename, power on/off, a VM created in a folder, through inventory.vcenter's helpers) its
row shows it: median and max.
Targets on a 2-core machine: sync < 30 s, RSS < 1 GiB, list page < 200 ms, live change < 2 s.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.bench_django import django_on_private_postgres  # noqa: E402
from tools.bench_specs import bulk_spec  # noqa: E402
from tools.simulator import Simulator  # noqa: E402

SIZES = ((10, 100), (100, 100), (1000, 50))  # folders × VMs per folder: 1,000, 10,000, 50,000 VMs
PASSWORD_ENV = "BENCH_SIM_PASSWORD"  # noqa: S105 - the simulator's password reaches the sync process this way, not argv


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


def sync_child(name: str, host: str, port: int, username: str) -> int:
    """In a fresh process (Django on the parent's database): one full sync; prints its figures as JSON."""
    import django

    django.setup()
    from inventory import vcenter as vsphere
    from inventory.models import VCenter
    from inventory.sync import apply_inventory

    password = os.environ[PASSWORD_ENV]
    vc = VCenter(name=name, host=host, port=port, protocol="http", username=username, verify_tls=False)
    vc.password = password
    vc.save()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with vsphere.connect(vsphere.Endpoint(host, port, protocol="http"), username, password) as conn:
        inventory = vsphere.fetch_inventory(conn)
    read = time.perf_counter() - started
    with counting_queries() as queries:
        write_started = time.perf_counter()
        result = apply_inventory(vc, inventory)
        write = time.perf_counter() - write_started
    figures = {
        "vcenter_id": vc.pk,
        "vms": result.vms_seen,
        "folders": result.folders,
        "read_s": read,
        "write_s": write,
        "total_s": read + write,
        "queries": queries.count,
        "round_trips": inventory.round_trips,
        "rss_before_mib": rss_before,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures))
    return 0


def sync_in_child(name: str, sim: Simulator) -> dict[str, Any]:
    env = {**os.environ, PASSWORD_ENV: sim.password}
    out = subprocess.run(
        [sys.executable, __file__, "--sync-child", name, sim.host, str(sim.port), sim.username],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def list_page_times(runs: int = 15) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from inventory.models import Folder, VirtualMachine

    user = get_user_model().objects.create_superuser("bench", password=None)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    folder = Folder.objects.filter(is_root=False).order_by("path").first()
    last_page = math.ceil(VirtualMachine.objects.filter(removed_at__isnull=True).count() / 50)
    requests = {
        "first page, by name": {},
        "search 'F05'": {"q": "F05"},
        "folder subtree": {"folder": folder.pk},
        "unprotected, page 100": {"protection": "unprotected", "page": 100},
        "htmx list fragment": {"q": "vm-F0"},
        f"last page ({last_page}), by name": {"page": last_page},
        "page 1000, by path desc.": {"sort": "-path", "page": 1000},
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


def shows_within(check: Callable[[], bool], make_change: Callable[[], object], timeout: float = 30.0) -> float:
    """Seconds from just before the change is made in vCenter until check() sees it in the database."""
    started = time.perf_counter()
    make_change()
    while not check():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"a change did not show within {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter() - started


Change = tuple[str, Callable[[], object], Callable[[], bool]]  # kind, make it in vCenter, shows in the row


def ten_changes(conn: Any, vcenter_id: int) -> list[Change]:
    """Four renames, three power changes and three VMs created in a folder, each made through
    inventory.vcenter's helpers, with the database check that sees it."""
    from inventory import vcenter as vsphere
    from inventory.models import Folder, ResourcePool, VirtualMachine

    vms = list(VirtualMachine.objects.filter(vcenter_id=vcenter_id).order_by("pk")[:7])
    folder = Folder.objects.filter(vcenter_id=vcenter_id, is_root=False).order_by("-path").first()
    pool = ResourcePool.objects.filter(vcenter_id=vcenter_id).first()

    def rename(vm: Any, new: str) -> Change:
        return (
            "rename",
            lambda: vsphere.rename_vm(conn, vm.moref, new),
            lambda: VirtualMachine.objects.filter(pk=vm.pk, name=new).exists(),
        )

    def power(vm: Any) -> Change:
        on = vm.power_state != "poweredOn"
        state = "poweredOn" if on else "poweredOff"
        switch = vsphere.power_on if on else vsphere.power_off
        return (
            f"power {'on' if on else 'off'}",
            lambda: switch(conn, vm.moref),
            lambda: VirtualMachine.objects.filter(pk=vm.pk, power_state=state).exists(),
        )

    def create(name: str) -> Change:
        spec = vsphere.VmSpec(
            name=name, folder_moref=folder.moref, resource_pool_moref=pool.moref, datastore_name="bulk-ds", disks_mb=[1]
        )
        return (
            "create in a folder",
            lambda: vsphere.create_vm(conn, spec),
            lambda: VirtualMachine.objects.filter(vcenter_id=vcenter_id, name=name, folder=folder).exists(),
        )

    return [
        *(rename(vm, f"{vm.name}-renamed") for vm in vms[:4]),
        *(power(vm) for vm in vms[4:7]),
        *(create(f"bench-new-{n}") for n in range(3)),
    ]


def live_changes(vcenter_id: int, sim: Simulator) -> tuple[tuple[float, float], list[tuple[str, float]]]:
    """Start inventory.watcher's VCenterWatcher (as `make run` does), wait for its first full sync,
    then make ten changes in vCenter and time each until its row shows it."""
    from inventory import vcenter as vsphere
    from inventory.watcher import VCenterWatcher

    stop, synced = threading.Event(), threading.Event()
    watcher = VCenterWatcher(vcenter_id, stop, on_sync=synced.set)
    reset_peak_rss()
    started = time.perf_counter()
    watcher.start()
    try:
        if not synced.wait(600):
            raise SystemExit("the watcher's first sync did not finish in 600 s")
        ready = time.perf_counter() - started, peak_rss_since_reset_mib()
        endpoint = vsphere.Endpoint(sim.host, sim.port, protocol="http")
        with vsphere.connect(endpoint, sim.username, sim.password) as conn:
            return ready, [(kind, shows_within(check, make)) for kind, make, check in ten_changes(conn, vcenter_id)]
    finally:
        stop.set()
        watcher.join(60)


def fixed_queries(sync: dict[str, Any]) -> int:
    """The sync's queries less its batches: one INSERT per 1,000 VMs, one per 1,000 disks (one a VM
    here) and two per 1,000 folders (upserted, then given their parents)."""
    return sync["queries"] - 2 * math.ceil(sync["vms"] / 1000) - 2 * math.ceil(sync["folders"] / 1000)


def peak_rss_since_reset_mib() -> float:
    """VmHWM of this process, reset by reset_peak_rss()."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def print_syncs(results: dict[int, dict[str, Any]], sim_start: dict[int, float]) -> None:
    print(
        f"{'VMs':>8} {'sim start s':>12} {'read s':>8} {'write s':>8} {'total s':>8} {'peak RSS MiB':>13} "
        f"{'queries':>8} {'fixed part':>11} {'round trips':>12}"
    )
    for vms, r in results.items():
        print(
            f"{vms:>8} {sim_start[vms]:>12.1f} {r['read_s']:>8.1f} {r['write_s']:>8.1f} {r['total_s']:>8.1f} "
            f"{r['rss_mib']:>13.0f} {r['queries']:>8} {fixed_queries(r):>11} {r['round_trips']:>12}"
        )


def main() -> int:
    bench_started = time.perf_counter()
    with django_on_private_postgres() as work:
        print("Inventory benchmark (vcsim, PostgreSQL, this machine)")
        results: dict[int, dict[str, Any]] = {}
        sim_start: dict[int, float] = {}
        for folders, per_folder in SIZES:
            vms = folders * per_folder
            started = time.perf_counter()
            with Simulator.start(bulk_spec(folders, per_folder), workdir=work / f"sim-{vms}", timeout=900) as sim:
                sim_start[vms] = time.perf_counter() - started
                results[vms] = sync_in_child(f"bench-{vms}", sim)
                if vms != 50_000:
                    continue
                print_syncs(results, sim_start)
                biggest = results[50_000]
                fixed = {fixed_queries(r) for r in results.values()}
                print(f"full sync of 50,000 VMs: {biggest['total_s']:.1f} s (target < 30 s)")
                print(f"peak RSS of that sync's process: {biggest['rss_mib']:.0f} MiB (target < 1024 MiB)")
                print(
                    "SQL queries: a fixed part plus one INSERT per 1,000 VMs, one per 1,000 disks and two per 1,000 "
                    f"folders; the fixed part is {'equal' if len(fixed) == 1 else 'NOT equal'} at every size "
                    f"({', '.join(str(r['queries']) for r in results.values())} in all)"
                )
                total_vms = sum(results)
                print(f"VM list page at {total_vms:,} VMs (50,000 in one vCenter), median server time (< 200 ms):")
                for label, ms in list_page_times().items():
                    print(f"  {label:<30} {ms:7.1f} ms")
                (ready, ready_rss), changes = live_changes(biggest["vcenter_id"], sim)
                seconds = [s for _, s in changes]
                print(
                    f"inventory.watcher's first full sync at 50,000 VMs (initial WaitForUpdatesEx, then a full sync): "
                    f"{ready:.1f} s, peak RSS {ready_rss:.0f} MiB"
                )
                print(
                    "live changes at 50,000 VMs: "
                    f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s over {len(seconds)} "
                    "(target < 2 s)"
                )
                for kind in dict.fromkeys(k for k, _ in changes):
                    print(f"  {kind:<20} " + ", ".join(f"{s:.2f}" for k, s in changes if k == kind) + " s")
        print("Peer: Azure Backup Server discovers new VMs once a day; here a change applies within seconds.")
    print(f"benchmark run time: {time.perf_counter() - bench_started:.0f} s")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sync-child"]:
        name, host, port, username = sys.argv[2:6]
        raise SystemExit(sync_child(name, host, int(port), username))
    raise SystemExit(main())
