"""`make bench-instant`: instant recovery of a 1 GiB and a 32 GiB point against a full restore of each.

Two VMs in the simulator (over TLS), each with the same 256 MiB ext4 file system (200 MiB of random
files in it) at the start of a sparse disk of 1 GiB and 32 GiB, backed up by the product's backup job
(the first backup reads the whole disk; zero chunks are detected and not stored). Then, through the
product as `make run` runs it (PostgreSQL, Redis, an RQ worker, the instant-recovery supervisor's loop,
nfs-ganesha, FUSE, the simulator):

1. instant recovery of each point (instant.actions.start_instant_recovery and its job): seconds from
   the request to the VM powered on, and the bytes the FUSE server read from the store by then (its
   status.json) as a share of the disk; the simulator registers and powers on but boots no guest;
2. over NFS (libnfs, tools/nfs_client.py, no kernel mount): 2,000 random 4 KiB reads in the file
   system's 256 MiB (median and p99, ms) and a sequential read of the first GiB (MB/s) of each disk's
   flat file, beside the same bytes as a plain sparse file exported from a directory by the same
   ganesha (the store and the plain file are both in the page cache);
3. the recoveries stopped (nothing is left: no mount, export, overlay, datastore or VM);
4. a full restore of each point to a new VM (recovery.actions.start_vm_restore: the disk written
   through the datastore HTTP API, then read back and checked chunk by chunk).

Figures on this machine (2 cores, shared with other work; `make bench-instant`, 2026-12-03): powered on
0.7 s (1 GiB, ganesha started first) and 0.5 s (32 GiB) after the request, with 0 bytes of the disks
read; over NFS 4 KiB random reads 0.12 ms median, p99 5-27 ms (the first read of a 4 MiB chunk decodes
it) against 0.04 / 0.1 ms plain, sequential 530-640 MB/s against 590-800 MB/s plain (libnfs, one
request at a time); full restore 6 s (1 GiB) and 88 s (32 GiB); the 32 GiB first backup 100 s (it
reads every byte). The run takes about 4 minutes and needs ~35 GB free under /tmp (the 32 GiB restore
writes a full file).

    .venv/bin/python tools/bench_instant.py [--reads 2000] [--big-gib 32]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import diskimages  # noqa: E402
from tools.bench_django import django_on_private_postgres  # noqa: E402
from tools.nfs_client import nfs_open  # noqa: E402
from tools.services import free_port  # noqa: E402
from tools.simulator import Simulator  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
FS_MIB = 256  # the file system at the start of each disk
SIZES = {"bench-1g": 1024, "bench-32g": 32 * 1024}  # VM name: disk MiB (--big-gib changes the second)
PLAIN_EXPORT_ID = 65000  # far above the recoveries' export ids (their primary keys)
SEQ_PIECE = 1 * MIB


@dataclass
class Figures:
    """One point's row of the table."""

    disk_bytes: int
    backup_s: float = 0.0
    powered_on_s: float = 0.0
    bytes_read: int = 0
    bytes_read_after: int = 0  # once the NFS reads are done: the counter counts
    nfs: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # median ms, p99 ms, MB/s
    restore_s: float = 0.0


def spec() -> dict[str, Any]:
    vms = [{"name": name, "disks_mb": [mib], "guest_id": "otherLinux64Guest"} for name, mib in SIZES.items()]
    return {
        "datacenters": [
            {
                "name": "DC",
                "clusters": [{"name": "C", "hosts": 1}],
                "datastores": [{"name": "ds1"}],
                "folders": [{"path": "Prod", "vms": vms}],
            }
        ]
    }


def file_system_image() -> Path:
    """A 256 MiB ext4 disk: a small Linux tree and 200 MiB of incompressible files (cached)."""
    rng = random.Random(16)
    tree: dict[str, Any] = diskimages.sample_linux_tree()
    tree["srv"] = {"data": {f"blob-{n:02d}.bin": rng.randbytes(20 * MIB) for n in range(10)}}
    return diskimages.build_ext4_disk(tree, size_mib=FS_MIB, label="bench")


def run_jobs() -> None:
    """Every queued job, by a real RQ worker (SimpleWorker, burst) in this process."""
    import django_rq
    from django.conf import settings
    from rq import SimpleWorker

    queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
    SimpleWorker(queues, connection=queues[0].connection).work(
        burst=True, with_scheduler=False, logging_level="WARNING"
    )


def succeeded(run: Any) -> Any:
    from jobs.models import JobRun

    run.refresh_from_db()
    if run.status != JobRun.Status.SUCCEEDED:
        raise SystemExit(f"{run.title}: {run.status}: {run.error or run.traceback}")
    return run


class SupervisorLoop(threading.Thread):
    """instant.supervisor's reconcile every 0.2 s (the command's loop, faster), under a lock the bench
    takes to add its own export to the supervisor's ganesha."""

    def __init__(self) -> None:
        super().__init__(name="instant-supervisor", daemon=True)
        from instant import supervisor

        self.supervisor = supervisor.Supervisor()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopping.wait(0.2):
                with self.lock:
                    self.supervisor.reconcile()
        finally:
            with self.lock:
                self.supervisor.shutdown()
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(120)


def set_up_product(sim: Simulator) -> Any:
    """The simulator registered as a vCenter and synced, DC/Prod protected; returns an administrator."""
    from django.contrib.auth import get_user_model

    from inventory import vcenter as vsphere
    from inventory.models import Folder, VCenter
    from inventory.sync import apply_inventory
    from protection import actions

    vc = VCenter(name="lab", host=sim.host, port=sim.port, username=sim.username, thumbprint=sim.thumbprint or "")
    vc.password = sim.password
    vc.save()
    with connect(sim) as conn:
        apply_inventory(vc, vsphere.fetch_inventory(conn))
    actions.save_group(
        None,
        group=None,
        name="Prod",
        description="bench",
        selection=actions.Selection(folder_ids=[Folder.objects.get(path="DC/Prod").pk]),
        policy_values=actions.default_policy_values(),
    )
    return get_user_model().objects.create_superuser("bench", password=None)


def connect(sim: Simulator) -> Any:
    from inventory import vcenter as vsphere

    return vsphere.connect(vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint), sim.username, sim.password)


def back_up(vm_name: str) -> tuple[Any, float]:
    from inventory.models import VirtualMachine
    from protection import actions
    from vault.models import RecoveryPoint

    vm = VirtualMachine.objects.get(name=vm_name)
    started = time.perf_counter()
    (run,) = actions.backup_now(None, vm=vm)
    run_jobs()
    succeeded(run)
    return RecoveryPoint.objects.filter(vm=vm).latest("created"), time.perf_counter() - started


def instant_start(sim: Simulator, point: Any, user: Any) -> tuple[Any, float, int]:
    """Start an instant recovery; returns it, seconds from the request to powered on, and the bytes
    its server had read from the store then (from a status.json written after power-on)."""
    from instant import actions
    from inventory import vcenter as vsphere

    started = time.perf_counter()
    recovery = actions.start_instant_recovery(user, point, name=f"{point.vm.name}-instant")
    run_jobs()
    succeeded(recovery.job)
    seconds = time.perf_counter() - started
    powered_on = time.time()
    recovery.refresh_from_db()
    with connect(sim) as conn:
        state = vsphere.power_state(conn, recovery.vm_moref)
    if state != "poweredOn":
        raise SystemExit(f"{recovery.vm_name} is {state} after its start job")
    return recovery, seconds, int(status_since(recovery, powered_on)["bytes_read"])


def status_since(recovery: Any, after: float) -> dict[str, Any]:
    """The recovery's server's status.json once it was written after `after` (every 2 s)."""
    from instant import supervisor

    def fresh() -> dict[str, Any] | None:
        status = supervisor.read_status(recovery)
        return status if status is not None and float(status.get("updated", 0)) > after else None

    result: dict[str, Any] = wait_for(fresh, "a fresh status.json")
    return result


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def random_reads(url: str, count: int) -> tuple[float, float]:
    """Median and p99 (ms) of `count` 4 KiB reads at random aligned offsets in the file system."""
    rng = random.Random(4096)
    offsets = [rng.randrange(FS_MIB * MIB // 4096) * 4096 for _ in range(count)]
    times = []
    with nfs_open(url, os.O_RDONLY) as f:
        for offset in offsets:
            started = time.perf_counter()
            if len(f.pread(4096, offset)) != 4096:
                raise SystemExit(f"short read at {offset} of {url}")
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def sequential_read(url: str, size: int = GIB) -> float:
    """MB/s reading the first `size` bytes in 1 MiB requests."""
    done = 0
    started = time.perf_counter()
    with nfs_open(url, os.O_RDONLY) as f:
        while done < size:
            n = len(f.pread(min(SEQ_PIECE, size - done), done))
            if n == 0:
                raise SystemExit(f"{url} ended after {done} bytes")
            done += n
    return done / (time.perf_counter() - started) / 1e6


def nfs_figures(url: str, reads: int) -> tuple[float, float, float]:
    median, p99 = random_reads(url, reads)
    return median, p99, sequential_read(url)


def plain_copy(image: Path, directory: Path, name: str, size: int) -> Path:
    """The flat file's bytes as a plain sparse file: the image, then zeros up to the disk's size."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    shutil.copyfile(image, path)
    os.truncate(path, size)
    return path


@contextmanager
def plain_export(loop: SupervisorLoop, directory: Path) -> Iterator[Any]:
    """The directory exported by the supervisor's ganesha beside the recoveries; yields the ganesha."""
    from instant.nfs import Export

    with loop.lock:
        ganesha = loop.supervisor.ganesha
        if ganesha is None:
            raise SystemExit("the supervisor runs no ganesha")
        ganesha.exports[PLAIN_EXPORT_ID] = Export(PLAIN_EXPORT_ID, directory)
        ganesha.reload()
    try:
        yield ganesha
    finally:
        with loop.lock:
            ganesha.exports.pop(PLAIN_EXPORT_ID, None)
            ganesha.reload()


def stop_all(sim: Simulator, recoveries: list[Any], user: Any) -> None:
    """Stop every recovery (instant.actions.stop and its job) and wait until nothing of them is left:
    no mount, export, overlay or server (the supervisor's part), no VM or datastore in vCenter."""
    from instant import actions

    for recovery in recoveries:
        run = actions.stop(user, recovery)
        run_jobs()
        succeeded(run)
    for recovery in recoveries:

        def torn_down(recovery: Any = recovery) -> bool:
            recovery.refresh_from_db()
            return not recovery.directory.exists() and recovery.serve_pid is None and recovery.export_id is None

        wait_for(torn_down, f"the supervisor to remove {recovery.vm_name}'s mount, export and overlay")
    with open("/proc/mounts") as mounts:
        left = [line for line in mounts if "vmb-bench-instant" in line]
    with connect(sim) as conn:
        names = {ds.name for dc in conn.content.rootFolder.childEntity for ds in dc.datastore}
    left += [name for name in names if name.startswith("vmb-instant-")]
    if left:
        raise SystemExit(f"left behind after stop: {left}")


def full_restore(point: Any, user: Any, sim: Simulator) -> float:
    """A whole-VM restore of the point to a new VM on ds1 (written, read back, checked); the VM is
    destroyed afterwards to give its disk space back."""
    from inventory import vcenter as vsphere
    from inventory.models import Datastore
    from recovery import actions

    vm = point.vm
    target = {
        "mode": "new",
        "name": f"{vm.name}-restored",
        "folder_id": vm.folder_id,
        "pool_id": vm.resource_pool_id,
        "datastore_id": Datastore.objects.get(name="ds1").pk,
    }
    started = time.perf_counter()
    run = actions.start_vm_restore(user, point, target)
    run_jobs()
    seconds = time.perf_counter() - started
    run = succeeded(run)
    with connect(sim) as conn:
        vsphere.destroy_vm(conn, run.result["moref"])
    return seconds


def measure(args: argparse.Namespace, work: Path, sim: Simulator, image: Path) -> dict[str, Figures]:
    user = set_up_product(sim)
    figures = {name: Figures(mib * MIB) for name, mib in SIZES.items()}
    points = {}
    for name, row in figures.items():
        sim.write_disk_range(name, 0, 0, image.read_bytes())  # the file system; the rest stays a hole
        points[name], row.backup_s = back_up(name)
        print(f"  {name}: backed up in {row.backup_s:.1f} s", flush=True)
    loop = SupervisorLoop()
    loop.start()
    try:
        recoveries = []
        for name, row in figures.items():
            recovery, row.powered_on_s, row.bytes_read = instant_start(sim, points[name], user)
            recoveries.append(recovery)
            print(f"  {name}: powered on from the point in {row.powered_on_s:.1f} s", flush=True)
        plain_dir = work / "plain"
        for name, recovery in zip(figures, recoveries, strict=True):
            (flat,) = sorted(p.name for p in recovery.export_path.glob("*-flat.vmdk"))
            served_url = loop.supervisor.ganesha.url(recovery.export_path, flat)  # type: ignore[union-attr]
            figures[name].nfs["served"] = nfs_figures(served_url, args.reads)
            after = time.time()
            figures[name].bytes_read_after = int(status_since(recovery, after)["bytes_read"])
            plain_copy(image, plain_dir, f"{name}-flat.vmdk", figures[name].disk_bytes)
        with plain_export(loop, plain_dir) as ganesha:
            for name, row in figures.items():
                row.nfs["plain"] = nfs_figures(ganesha.url(plain_dir, f"{name}-flat.vmdk"), args.reads)
        print("  NFS reads measured; stopping the recoveries", flush=True)
        stop_all(sim, recoveries, user)
    finally:
        loop.stop()
    for name, row in figures.items():
        print(f"  {name}: full restore ...", flush=True)
        row.restore_s = full_restore(points[name], user, sim)
    return figures


def table(figures: dict[str, Figures]) -> None:
    rows = list(figures.values())
    lines: list[tuple[str, list[str], str]] = [
        ("backup (product job; a first backup reads the whole disk), s", [f"{r.backup_s:.1f}" for r in rows], ""),
        ("instant recovery: request to powered on, s", [f"{r.powered_on_s:.1f}" for r in rows], "< 60, ~equal"),
        (
            "read from the store before power-on, bytes (% of disk)",
            [f"{r.bytes_read:,} ({100 * r.bytes_read / r.disk_bytes:.2f}%)" for r in rows],
            "< 1%",
        ),
        (
            "read from the store once the NFS reads below were done, MiB",
            [f"{r.bytes_read_after / MIB:,.0f}" for r in rows],
            "",
        ),  # fmt: skip
    ]
    for kind, label in (("served", "NFS, served point"), ("plain", "NFS, plain file (same ganesha)")):
        latency = [f"{r.nfs[kind][0]:.2f} / {r.nfs[kind][1]:.2f}" for r in rows]
        lines.append((f"{label}: 4 KiB random read median / p99, ms", latency, ""))
        lines.append((f"{label}: sequential read of the first GiB, MB/s", [f"{r.nfs[kind][2]:.0f}" for r in rows], ""))
    lines.append(("full restore to a new VM (write, read back, check), s", [f"{r.restore_s:.1f}" for r in rows], ""))
    heads = [f"{SIZES[name] // 1024} GiB point" for name in figures]
    print_table(["figure", *heads, "target"], [[label, *values, target] for label, values, target in lines])


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table: the figure's name and a last "target" column left-aligned, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0} | ({len(header) - 1} if header[-1] == "target" else set())

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    print("\n" + line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="random 4 KiB reads per file")
    parser.add_argument("--big-gib", type=int, default=32, help="the larger disk's size (a quick try: 2)")
    args = parser.parse_args()
    if args.big_gib != 32:
        del SIZES["bench-32g"]
        SIZES[f"bench-{args.big_gib}g"] = args.big_gib * 1024
    # ganesha exports only paths of letters, digits and ._/+- (mkdtemp may put "_" in a name).
    instant_dir = Path(f"/tmp/vmb-bench-instant-{os.getpid()}")
    instant_dir.mkdir()
    os.environ.update(INSTANT_DIR=str(instant_dir), INSTANT_NFS_PORT=str(free_port()))
    print("Building the 256 MiB ext4 image (cached in .cache/diskimages) ...", flush=True)
    image = file_system_image()
    try:
        with django_on_private_postgres() as work:
            datastores = Path(tempfile.mkdtemp(prefix="vmb-bench-ds-", dir="/tmp"))  # on disk: a 32 GiB restore
            try:
                with Simulator.start(spec(), workdir=work / "sim", tls=True, datastore_dir=datastores) as sim:
                    figures = measure(args, work, sim, image)
            finally:
                shutil.rmtree(datastores, ignore_errors=True)
        table(figures)
    finally:
        with open("/proc/mounts") as mounts:
            if str(instant_dir) not in mounts.read():
                shutil.rmtree(instant_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
