"""The end-to-end backup figures for `make bench-backup`: VMs with 1 GiB disks behind the simulator,
read as backup jobs do (snapshot, datastore HTTP reads over pinned TLS, store on disk), without Django.

Each VM is backed up by a process of its own, as by one RQ worker each; they start together. The
figures: wall time from the first start to the last commit, logical MB/s over all VMs, and CPU
seconds per GiB, split between the backup processes and the simulator (on a real installation the
simulator's share is spent by ESXi and vCenter, not by this machine).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from inventory import vcenter as vsphere
from tools.simulator import Simulator, one_vm_spec
from vault.engine import Store, backup_disk

GIB = 2**30


def spec(vm_count: int, size_mib: int) -> dict[str, Any]:
    """one_vm_spec's inventory with vm_count VMs "bench-0".. of one disk each."""
    inventory = one_vm_spec("bench-0", [size_mib])
    inventory["datacenters"][0]["folders"][0]["vms"] += [
        {"name": f"bench-{n}", "disks_mb": [size_mib]} for n in range(1, vm_count)
    ]
    return inventory


def end_to_end(work: Path, images: list[Path], reps: int = 3) -> dict[str, float]:
    """Back up one VM per image, all at once, `reps` times into a new store each; medians."""
    size_mib = max(-(-image.stat().st_size // 2**20) for image in images)
    logical = sum(image.stat().st_size for image in images)
    runs = []
    with Simulator.start(spec(len(images), size_mib), workdir=work / f"sim-{len(images)}", tls=True) as sim:
        for n, image in enumerate(images):
            sim.upload_disk_image(f"bench-{n}", 0, image)
        for rep in range(reps):
            store = work / f"e2e-store-{len(images)}-{rep}"
            os.sync()  # nothing left to write back from the last repetition or the uploads
            runs.append(_once(sim, store, len(images)))
            shutil.rmtree(store, ignore_errors=True)
    runs.sort(key=lambda r: r["seconds"])
    middle = runs[len(runs) // 2]
    gib = logical / GIB
    return {
        "vms": len(images),
        "seconds": middle["seconds"],
        "mb_per_s": logical / middle["seconds"] / 1e6,
        "cpu_per_gib": middle["cpu"] / gib,
        "sim_cpu_per_gib": middle["sim_cpu"] / gib,
    }


def _once(sim: Simulator, store_dir: Path, vm_count: int) -> dict[str, float]:
    Store(store_dir)  # created before the clock starts
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_backup_vm, args=(sim, store_dir, n, go, results)) for n in range(vm_count)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # every process is up and connected
    sim_before = process_cpu(sim.process.pid)
    go.set()
    reported = [results.get(timeout=600) for _ in workers]
    sim_cpu = process_cpu(sim.process.pid) - sim_before
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"a backup process failed (exit code {worker.exitcode})")
    started = min(r["started"] for r in reported)
    ended = max(r["ended"] for r in reported)
    return {"seconds": ended - started, "cpu": sum(r["cpu"] for r in reported), "sim_cpu": sim_cpu}


def _backup_vm(sim: Simulator, store_dir: Path, n: int, go: Any, results: Any) -> None:
    vm = sim.vm(f"bench-{n}")
    disk = vm["disks"][0]
    endpoint = vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint)
    with vsphere.connect(endpoint, sim.username, sim.password) as conn:
        store = Store(store_dir)
        go.wait()
        cpu_before = own_cpu()
        started = time.time()
        snapshot = vsphere.create_snapshot(conn, vm["moref"], "bench", "benchmark", quiesce=False)
        with (
            store.begin_point(f"e2e-{n}") as pending,
            vsphere.DatastoreFile(conn, "DC", disk["datastore"], disk["flat_path"]) as source,
        ):
            backup_disk(pending, str(disk["key"]), source)
            pending.commit({})
        vsphere.remove_snapshot(conn, snapshot)
        ended = time.time()
    results.put({"started": started, "ended": ended, "cpu": own_cpu() - cpu_before})


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
