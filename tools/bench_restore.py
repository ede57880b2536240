"""`make bench-restore`: file-level and full-disk restore figures.

1. Time to first directory listing of a 4 GiB NTFS disk point: open the point, the disk reader, the
   partition table and NTFS, list the root (what the Recovery page does on a click). Target < 1 s.
   Peer: ntfsls (ntfs-3g) on the raw image file, which reads the same metadata from a plain file.
2. Single-file download throughput of a 512 MiB file from that point (read as the download view
   does, 1 MiB pieces). Target >= 300 MB/s. Peer: ntfscat (ntfs-3g) on the raw image, to /dev/null.
3. Full-disk restore through the simulator: a 1 GiB point written to a VM's disk with the datastore
   HTTP API over pinned TLS and every chunk read back while it goes (recovery.disk_copy, what a
   whole-VM restore does), beside the raw image file PUT the same way. Target >= 0.9x the PUT.

Medians of --reps runs; the store and image are in the page cache (24 GiB of RAM), like a busy server.

    .venv/bin/python tools/bench_restore.py [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inventory import vcenter as vsphere  # noqa: E402
from recovery import filesystems as fs  # noqa: E402
from recovery.disk_copy import DiskTarget, write_and_check  # noqa: E402
from tools import diskimages, imagegen  # noqa: E402
from tools.bench_e2e import own_cpu, process_cpu  # noqa: E402
from tools.simulator import Simulator, one_vm_spec  # noqa: E402
from vault.engine import DiskReader, FileSource, Monitor, Store, TieredStore, backup_disk  # noqa: E402

MIB = 1024 * 1024
BIG = "/Data/big-database.bak"


def backup(store: Store, point: str, image: Path) -> None:
    with store.begin_point(point) as pending, FileSource(image) as source:
        backup_disk(pending, "disk0", source)
        pending.commit({})


def first_listing(store_root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    source = TieredStore(Store(store_root), None)  # a fresh object: nothing cached in this process
    index = source.open_point("ntfs").index("disk0")
    layout = fs.open_disk(DiskReader(source, index, cache_chunks=16), index.image_size)
    volume = next(v for v in layout.volumes if v.browsable)
    entries = layout.filesystem(volume.index).list_dir("/")
    return time.perf_counter() - started, len(entries)


def download(store_root: Path) -> float:
    source = TieredStore(Store(store_root), None)
    index = source.open_point("ntfs").index("disk0")
    layout = fs.open_disk(DiskReader(source, index, cache_chunks=16), index.image_size)
    volume = next(v for v in layout.volumes if v.browsable)
    started = time.perf_counter()
    total = 0
    with layout.filesystem(volume.index).open(BIG) as stream:
        while piece := stream.read(MIB):
            total += len(piece)
    seconds = time.perf_counter() - started
    return total / seconds / 1e6


def ntfs_offset(image: Path) -> int:
    with open(image, "rb") as f:
        layout = fs.open_disk(f, image.stat().st_size)
        return next(v for v in layout.volumes if v.browsable).offset


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def through_simulator(work: Path, store: Store, image: Path, reps: int) -> dict[str, float]:
    """The product's disk restore (recovery.disk_copy: upload with every chunk read back while it
    goes) beside a plain PUT of the image file, interleaved; medians, and CPU seconds per GiB of this
    process and of the simulator (on a real installation ESXi's)."""
    size_mib = image.stat().st_size // MIB
    spec = one_vm_spec("bench", [size_mib])
    ours, raw = [], []
    with Simulator.start(spec, workdir=work / "sim", tls=True) as sim:
        disk = sim.vm("bench")["disks"][0]
        target = DiskTarget(0, "Hard disk 1", "DC", disk["datastore"], disk["flat_path"])
        index = store.open_point("disk1g").index("disk0")
        with vsphere.connect(
            vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint), sim.username, sim.password
        ) as conn:
            source = TieredStore(store, None)
            for _ in range(reps):  # ours last, so the check below is of what ours wrote
                raw.append(cpu_timed(sim, lambda: put_plain(conn, disk, image, index.image_size)))
                ours.append(cpu_timed(sim, lambda: write_and_check(conn, target, source, index, Monitor())))
        if sim.disk_file("bench", 0).read_bytes() != image.read_bytes():
            raise SystemExit("the restored disk differs from the image")
    size, gib = image.stat().st_size / 1e6, image.stat().st_size / 2**30
    result = {}
    for name, runs in (("ours", ours), ("raw", raw)):
        wall = statistics.median(r[0] for r in runs)
        result |= {
            f"{name}_mb": size / wall,
            f"{name}_cpu": statistics.median(r[1] for r in runs) / gib,
            f"{name}_sim_cpu": statistics.median(r[2] for r in runs) / gib,
        }
    return result


def put_plain(conn: vsphere.Connection, disk: dict, image: Path, size: int) -> None:
    with open(image, "rb") as plain:
        vsphere.DatastoreFile(conn, "DC", disk["datastore"], disk["flat_path"]).write(plain, size)


def cpu_timed(sim: Simulator, step) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, the simulator's CPU seconds) of step()."""
    sim_before, own_before, started = process_cpu(sim.process.pid), own_cpu(), time.perf_counter()
    step()
    return time.perf_counter() - started, own_cpu() - own_before, process_cpu(sim.process.pid) - sim_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmb-bench-restore-", dir="/tmp"))
    try:
        print("Building a 4 GiB NTFS disk with a 512 MiB file (cached in .cache/diskimages) ...", flush=True)
        rng = random.Random(7)
        big = b"".join(rng.randbytes(MIB) for _ in range(512))
        tree = {
            "Data": {"big-database.bak": big},
            "Users": {
                f"user{n:03d}": {"Documents": {f"note{k}.txt": f"note {n} {k}\r\n" for k in range(20)}}
                for n in range(50)
            },
        }
        image = diskimages.build_ntfs_disk(tree, size_mib=4096, label="Bench")
        del big
        store = Store(work / "store")
        backup(store, "ntfs", image)
        disk1g = work / "disk1g.img"
        imagegen.generate(disk1g, 1024 * MIB)
        backup(store, "disk1g", disk1g)
        subprocess.run(["sync"], check=True)

        listings = [first_listing(store.root) for _ in range(args.reps)]
        offset = ntfs_offset(image)
        partition = work / "ntfs-partition.img"  # ntfs-3g tools want the volume itself
        with open(image, "rb") as src, open(partition, "wb") as dst:
            src.seek(offset)
            shutil.copyfileobj(src, dst, 16 * MIB)
        peer_listing = [timed(["ntfsls", "-f", str(partition)]) for _ in range(args.reps)]
        downloads = [download(store.root) for _ in range(args.reps)]
        peer_download = [512 * MIB / 1e6 / timed(["ntfscat", "-f", str(partition), BIG]) for _ in range(args.reps)]
        sim = through_simulator(work, store, disk1g, args.reps)

        listing = statistics.median(t for t, _ in listings)
        print(f"\n{'figure':<52} {'ours':>10} {'peer':>10}  target")
        print(
            f"{'first listing of a 4 GiB NTFS point (s)':<52} {listing:10.3f} "
            f"{statistics.median(peer_listing):10.3f}  < 1 s"
            f"   (peer: ntfsls on the raw partition; {listings[0][1]} entries)"
        )
        print(
            f"{'512 MiB file download (MB/s)':<52} {statistics.median(downloads):10.0f} "
            f"{statistics.median(peer_download):10.0f}  >= 300   (peer: ntfscat on the raw partition)"
        )
        print(
            f"{'1 GiB full-disk restore through the simulator (MB/s)':<52} {sim['ours_mb']:10.0f} "
            f"{sim['raw_mb']:10.0f}  >= 0.9x   ({sim['ours_mb'] / sim['raw_mb']:.2f}x; peer: the raw image PUT the "
            "same way; ours reads every chunk back while uploading)"
        )
        print(
            f"{'  CPU s per GiB, this process / the simulator':<52} {sim['ours_cpu']:5.2f}/{sim['ours_sim_cpu']:4.2f} "
            f"{sim['raw_cpu']:5.2f}/{sim['raw_sim_cpu']:4.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
