"""`make bench-restore-test`: a restore test of a 1 GiB and a 32 GiB point against a full restore of each.

The lab is `make bench-instant`'s (tools/bench_instant.py, whose helpers this imports): two VMs in the
simulator (over TLS), each with the same 256 MiB ext4 file system (200 MiB of random files in it) at
the start of a sparse disk of 1 GiB and 32 GiB, backed up by the product's backup job; PostgreSQL,
Redis, an RQ worker in this process, the instant-recovery supervisor's loop, nfs-ganesha and FUSE.
For each point:

1. a restore test through the product (restore_tests.actions.start_test and its job, restore_tests.run
   on queue "verify", run by a real RQ worker; the group's policy saved with heartbeat_seconds 60,
   otherwise the defaults: NICs disconnected, names prefixed vmb-test-): seconds from start_test to the
   job's end with the test passed ("proven"), each step's seconds (volumes, start, heartbeat, cleanup:
   RestoreTest.steps), RestoreTest.bytes_read (what the instant recovery's FUSE server read from the
   store, from its status.json) and the bytes of chunks the job's own process read from the store
   (counted around engine.TieredStore.read_chunk in this process: the volume check's reads through
   recovery.browse, decoded bytes; the start step reads only the point's index, no chunk);
2. a full restore of the same point to a new VM (recovery.actions.start_vm_restore: written through
   the datastore HTTP API, read back and checked), its seconds and the chunk bytes it read the same way.

The simulator's guest "boots" in 1 s (tools/vcsim/guest.go: VMware Tools running and a green heartbeat
1 s after power-on) and reads nothing from its disks, so the heartbeat step's seconds are the
simulator's, not a real guest's: a real Windows or Linux guest takes tens of seconds to minutes to boot,
and its boot reads (tens to hundreds of MiB) add to the FUSE server's bytes.

Figures on this machine (2 cores, shared with other work; `make bench-restore-test`, 2026-12-03):
proven 2.1 s (1 GiB) and 2.4 s (32 GiB) after start_test (volumes 0.02 s, start 0.6 s, heartbeat 1.0 s,
cleanup 0.5 s), reading 8 MiB from the store (two 4 MiB chunks: partition table, ext4 superblock and
root folder, for the volume check; 0 bytes by the FUSE server, as the simulator's guest reads nothing),
against a full restore of 5.6 s and 102 s reading 212 MiB (every non-zero chunk). The run takes about
4 minutes (the 32 GiB first backup 97 s) and needs ~35 GB free under /tmp (the 32 GiB full restore
writes a full file).

    .venv/bin/python tools/bench_restore_test.py [--big-gib 32] [--heartbeat 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import bench_instant as lab  # noqa: E402
from tools.bench_django import django_on_private_postgres  # noqa: E402
from tools.services import free_port  # noqa: E402
from tools.simulator import Simulator  # noqa: E402

MIB = lab.MIB
STEPS = ("volumes", "start", "heartbeat", "cleanup")


@dataclass
class Figures:
    """One point's column of the table."""

    disk_bytes: int
    backup_s: float = 0.0
    proven_s: float = 0.0  # start_test to the job's end, passed
    method: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    served_bytes: int = 0  # RestoreTest.bytes_read: the FUSE server's reads
    job_bytes: int = 0  # chunks the job's own process read (the volume check)
    restore_s: float = 0.0
    restore_bytes: int = 0


class ChunkReads:
    """Bytes of chunks read from the store in this process: engine.TieredStore.read_chunk (which
    recovery.browse's source and the restore's source both are) wrapped while counting."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    @contextmanager
    def counting(self) -> Iterator[ChunkReads]:
        from vault import engine

        original = engine.TieredStore.read_chunk
        reads = self

        def read_chunk(store: Any, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
            data = original(store, digest, length, verify=verify)
            with reads._lock:
                reads.total += len(data)
            return data

        self.total = 0
        engine.TieredStore.read_chunk = read_chunk  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            engine.TieredStore.read_chunk = original  # type: ignore[method-assign]


def restore_test(point: Any, user: Any, row: Figures) -> None:
    """A restore test of the point through the product, run by the worker; fills the row."""
    from restore_tests import actions
    from restore_tests.models import RestoreTest

    reads = ChunkReads()
    with reads.counting():
        started = time.perf_counter()
        test = actions.start_test(user, point.vm, point=point)
        lab.run_jobs()
        row.proven_s = time.perf_counter() - started
    test.refresh_from_db()
    if test.state != RestoreTest.State.PASSED:
        raise SystemExit(f"the restore test of {point.vm.name} is {test.state}: {test.failure} {test.steps}")
    lab.succeeded(test.job)
    row.method = test.method
    row.steps = {step["check"]: float(step["seconds"]) for step in test.steps}
    row.served_bytes, row.job_bytes = test.bytes_read, reads.total


def nothing_left(sim: Simulator) -> None:
    """No test VM or NAS datastore in vCenter, no mount under the instant directory."""
    with lab.connect(sim) as conn:
        names = {ds.name for dc in conn.content.rootFolder.childEntity for ds in dc.datastore}
        vms = {vm.name for dc in conn.content.rootFolder.childEntity for vm in _vms(dc.vmFolder)}
    left = [n for n in names if n.startswith("vmb-instant-")] + [n for n in vms if n.startswith("vmb-test-")]
    with open("/proc/mounts") as mounts:
        left += [line.split()[1] for line in mounts if "vmb-bench-instant" in line]
    if left:
        raise SystemExit(f"left behind after the restore tests: {left}")


def _vms(folder: Any) -> Iterator[Any]:
    for child in folder.childEntity:
        if hasattr(child, "childEntity"):
            yield from _vms(child)
        else:
            yield child


def measure(args: argparse.Namespace, sim: Simulator, image: Path) -> dict[str, Figures]:
    from protection.models import ProtectionGroup
    from restore_tests import actions

    user = lab.set_up_product(sim)
    actions.save_policy(user, ProtectionGroup.objects.get(name="Prod"), heartbeat_seconds=args.heartbeat)
    figures = {name: Figures(mib * MIB) for name, mib in lab.SIZES.items()}
    points = {}
    for name, row in figures.items():
        sim.write_disk_range(name, 0, 0, image.read_bytes())  # the file system; the rest stays a hole
        points[name], row.backup_s = lab.back_up(name)
        print(f"  {name}: backed up in {row.backup_s:.1f} s", flush=True)
    loop = lab.SupervisorLoop()
    loop.start()
    try:
        for name, row in figures.items():
            restore_test(points[name], user, row)
            print(f"  {name}: proven recoverable in {row.proven_s:.1f} s", flush=True)
    finally:
        loop.stop()
    nothing_left(sim)
    for name, row in figures.items():
        print(f"  {name}: full restore ...", flush=True)
        reads = ChunkReads()
        with reads.counting():
            row.restore_s = lab.full_restore(points[name], user, sim)
        row.restore_bytes = reads.total
    return figures


def _bytes(n: int, disk: int) -> str:
    return f"{n / MIB:,.1f} MiB ({100 * n / disk:.2f}%)"


def table(figures: dict[str, Figures], heartbeat: int) -> None:
    rows = list(figures.values())
    lines: list[tuple[str, list[str]]] = [
        ("backup (product job; a first backup reads the whole disk), s", [f"{r.backup_s:.1f}" for r in rows]),
        ("restore test: start_test to the job's end, passed (proven), s", [f"{r.proven_s:.1f}" for r in rows]),
        ("  how the test VM was started", [r.method for r in rows]),
    ]
    for step in STEPS:
        note = f" (simulator's guest: 1 s; timeout {heartbeat} s)" if step == "heartbeat" else ""
        lines.append((f"  step {step}{note}, s", [f"{r.steps.get(step, 0.0):.2f}" for r in rows]))
    lines += [
        ("  read by the FUSE server (RestoreTest.bytes_read)", [_bytes(r.served_bytes, r.disk_bytes) for r in rows]),
        ("  chunks read by the job itself (the volume check)", [_bytes(r.job_bytes, r.disk_bytes) for r in rows]),
        (
            "  read from the store in all",
            [_bytes(r.served_bytes + r.job_bytes, r.disk_bytes) for r in rows],
        ),  # fmt: skip
        ("full restore to a new VM (write, read back, check), s", [f"{r.restore_s:.1f}" for r in rows]),
        ("  chunks read from the store by the full restore", [_bytes(r.restore_bytes, r.disk_bytes) for r in rows]),
    ]
    heads = [f"{lab.SIZES[name] // 1024} GiB point" for name in figures]
    lab.print_table(["figure", *heads], [[label, *values] for label, values in lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-gib", type=int, default=32, help="the larger disk's size (a quick try: 2)")
    parser.add_argument("--heartbeat", type=int, default=60, help="the policy's heartbeat_seconds")
    args = parser.parse_args()
    if args.big_gib != 32:
        del lab.SIZES["bench-32g"]
        lab.SIZES[f"bench-{args.big_gib}g"] = args.big_gib * 1024
    # ganesha exports only paths of letters, digits and ._/+- (mkdtemp may put "_" in a name).
    instant_dir = Path(f"/tmp/vmb-bench-instant-{os.getpid()}")
    instant_dir.mkdir()
    os.environ.update(INSTANT_DIR=str(instant_dir), INSTANT_NFS_PORT=str(free_port()))
    print("Building the 256 MiB ext4 image (cached in .cache/diskimages) ...", flush=True)
    image = lab.file_system_image()
    try:
        with django_on_private_postgres() as work:
            datastores = Path(tempfile.mkdtemp(prefix="vmb-bench-ds-", dir="/tmp"))  # on disk: a 32 GiB restore
            try:
                with Simulator.start(lab.spec(), workdir=work / "sim", tls=True, datastore_dir=datastores) as sim:
                    figures = measure(args, sim, image)
            finally:
                shutil.rmtree(datastores, ignore_errors=True)
        table(figures, args.heartbeat)
    finally:
        with open("/proc/mounts") as mounts:
            if str(instant_dir) not in mounts.read():
                shutil.rmtree(instant_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
