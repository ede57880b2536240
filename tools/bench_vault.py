"""`make bench-vault`: replication of a 1 GiB recovery point to Azurite and to a directory vault.

Steps, for each vault (Azurite over HTTP on loopback; a directory on the same disk):
1. full replication of a 1 GiB mixed image's point (every stored chunk uploaded);
2. a 1% change (10 random 1 MiB regions) backed up with CBT, then replicated: time and bytes sent.
Beside each full replication, the peer figure: the same bytes sent the plain way, as one blob per
chunk file with azure-storage-blob's `upload_blob` from the same number of threads (Azurite), or
`cp -r` of the chunk directory plus `sync` (directory). Both sides upload the same compressed
chunk files, so the ratio shows what the vault's bookkeeping (listing, verification, manifests)
costs. Medians of --reps runs, each on a fresh vault.

    .venv/bin/python tools/bench_vault.py [--size 1G] [--reps 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.storage.blob import ContainerClient  # noqa: E402

from tools import imagegen  # noqa: E402
from tools.services import Azurite  # noqa: E402
from vault.engine import FileSource, RemoteVault, Store, UploadLimits, backup_disk, replicate_point  # noqa: E402
from vault.engine.azure_blob import AzureBlobBackend  # noqa: E402
from vault.engine.blobs import DirectoryBackend  # noqa: E402

DISK = "disk0"


def backup(store: Store, point: str, image: Path, **options) -> None:
    with store.begin_point(point) as pending, FileSource(image) as source:
        backup_disk(pending, DISK, source, **options)
        pending.commit({})


def chunk_files(store: Store) -> list[Path]:
    return sorted(p for p in store.chunks_dir.rglob("*") if p.is_file())


def plain_azure_upload(files: list[Path], conn: str, container: str, threads: int) -> float:
    client = ContainerClient.from_connection_string(conn, container)
    started = time.perf_counter()

    def put(path: Path) -> None:
        client.upload_blob(f"plain/{path.name}", path.read_bytes(), overwrite=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - started


def plain_copy(src: Path, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", type=imagegen.parse_size)
    parser.add_argument("--reps", default=3, type=int)
    parser.add_argument("--threads", default=4, type=int)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vmb-bench-vault-", dir="/tmp"))
    azurite = Azurite(work / "azurite").start()
    try:
        image = work / "disk.img"
        print(f"Generating a {args.size / 2**30:.1f} GiB image ...", flush=True)
        imagegen.generate(image, args.size)
        store = Store(work / "store")
        backup(store, "full", image)
        areas = imagegen.mutate(image)
        backup(store, "incr", image, previous=store.open_point("full").index(DISK), changed_areas=areas)
        files = chunk_files(store)
        stored = sum(p.stat().st_size for p in files)
        print(f"Point: {args.size / 1e6:,.0f} MB of disk, {stored / 1e6:,.0f} MB of compressed chunks.\n", flush=True)

        rows = []
        for kind in ("azurite", "directory"):
            full, incr, incr_bytes, peer = [], [], [], []
            for rep in range(args.reps):
                if kind == "azurite":
                    container = f"bench{rep}{os.getpid()}"
                    backend = AzureBlobBackend.from_connection_string(azurite.connection_string(), container)
                    backend.ensure_container()
                else:
                    root = work / f"vault{rep}"
                    root.mkdir()
                    backend = DirectoryBackend(root)
                vault = RemoteVault(backend)
                subprocess.run(["sync"], check=True)
                first = replicate_point(store, vault, "full", limits=UploadLimits(threads=args.threads))
                second = replicate_point(store, vault, "incr", limits=UploadLimits(threads=args.threads))
                full.append(first.seconds)
                incr.append(second.seconds)
                incr_bytes.append(second.bytes_uploaded)
                if kind == "azurite":
                    peer.append(plain_azure_upload(files, azurite.connection_string(), container, args.threads))
                else:
                    peer.append(plain_copy(store.chunks_dir, work / f"copy{rep}"))
                    shutil.rmtree(root)
            rows.append(
                (
                    kind,
                    statistics.median(full),
                    statistics.median(incr),
                    statistics.median(incr_bytes),
                    statistics.median(peer),
                )
            )

        print(
            f"{'vault':<10} {'full s':>8} {'MB/s':>7} {'plain s':>8} {'ratio':>6} "
            f"{'1% incr s':>10} {'incr MB sent':>13}"
        )
        for kind, full_s, incr_s, sent, peer_s in rows:
            print(
                f"{kind:<10} {full_s:8.2f} {args.size / 1e6 / full_s:7.0f} {peer_s:8.2f} {full_s / peer_s:6.2f} "
                f"{incr_s:10.2f} {sent / 1e6:13.1f}"
            )
        print(
            "\nMB/s counts the disk's logical size (what a restore gives back); 'plain s' is the same chunk files "
            "uploaded without the vault's listing, verification and manifest (azure-storage-blob upload_blob from "
            f"{args.threads} threads, or cp -r + sync); ratio = vault / plain."
        )
    finally:
        azurite.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
