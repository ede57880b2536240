"""The end-to-end backup figure for `make bench-backup`: a 1 GiB disk behind a simulated VM, read as a
backup job does (snapshot, datastore HTTP reads over pinned TLS, store), without Django."""

from __future__ import annotations

import time
from pathlib import Path

from inventory import vcenter as vsphere
from tools.simulator import Simulator, one_vm_spec
from vault.engine import Store, backup_disk


def end_to_end(work: Path, image: Path) -> dict[str, float]:
    size_mib = -(-image.stat().st_size // 2**20)
    spec = one_vm_spec("bench", [size_mib])
    with Simulator.start(spec, workdir=work / "sim", tls=True) as sim:
        sim.upload_disk_image("bench", 0, image)
        vm = sim.vm("bench")
        disk = vm["disks"][0]
        started = time.perf_counter()
        with vsphere.connect(
            vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint), sim.username, sim.password
        ) as conn:
            snapshot = vsphere.create_snapshot(conn, vm["moref"], "bench", "benchmark", quiesce=False)
            store = Store(work / "e2e-store")
            with (
                store.begin_point("e2e") as pending,
                vsphere.DatastoreFile(conn, "DC", disk["datastore"], disk["flat_path"]) as source,
            ):
                backup_disk(pending, str(disk["key"]), source)
                pending.commit({})
            vsphere.remove_snapshot(conn, snapshot)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "mb_per_s": image.stat().st_size / seconds / 1e6}
