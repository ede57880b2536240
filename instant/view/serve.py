"""Serve one recovery point as a datastore folder until SIGTERM:

    python -m instant.view.serve --store DIR [--vault-config FILE] [--shared-cache DIR] --point ID
        --mount DIR --overlay DIR

Refuses up front, with one sentence on stderr and exit status 2, a point that could not be read
whole (archived or missing chunks: instant.view.source.check_chunks). Otherwise mounts the view
(instant.view.fs) in the foreground; libfuse's own SIGTERM/SIGINT handler ends the loop and
unmounts, the overlays are synced and closed, and the mount is checked gone (fusermount3 -u) before
exiting 0. OVERLAY/status.json appears once the view is mounted and is rewritten every few seconds
(bytes read from the store, overlay size). A mount left by a killed server ("Transport endpoint is
not connected") is lazily unmounted first, so the server can simply be started again.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mfusepy

from instant.view import layout
from instant.view.fs import PointFileSystem, VirtualDisk
from instant.view.shared_cache import SharedChunkFiles
from instant.view.source import CACHE_CHUNKS, ChunkCache, Unservable, VaultConfig, open_point
from vault import engine

log = logging.getLogger("instant.view.serve")
STATUS_EVERY = 2.0


@dataclass(frozen=True)
class Request:
    store: Path
    point: str
    mount: Path
    overlay: Path
    vault_config: Path | None = None
    cache_chunks: int = CACHE_CHUNKS
    shared_cache: Path | None = None  # vault chunks kept on disk for every server (shared_cache)


def prepare(request: Request) -> PointFileSystem:
    """Everything before the mount: the point checked whole, its overlays opened (created at the
    first run), its descriptors and .vmx seeded. Unservable with the sentence why."""
    if not (request.store / "store.json").is_file():
        raise Unservable(f"{request.store} is not a recovery point store (it has no store.json).")
    vault = VaultConfig.load(request.vault_config).open() if request.vault_config else None
    source = engine.TieredStore(engine.Store(request.store), vault)
    point = open_point(source, request.point)
    shared = SharedChunkFiles(request.shared_cache) if request.shared_cache and vault is not None else None
    cache = ChunkCache(source, request.cache_chunks, shared)
    indexes = {key: point.index(key) for key in point.disk_keys}
    files = layout.disk_files(point.meta, {key: index.image_size for key, index in indexes.items()})
    disks_dir, files_dir = request.overlay / "disks", request.overlay / "files"
    disks_dir.mkdir(parents=True, exist_ok=True)
    files_dir.mkdir(exist_ok=True)
    disks = [VirtualDisk(f, indexes[f.key], cache) for f in files]
    for disk in disks:
        disk.attach(disks_dir)
        _seed(files_dir / disk.files.descriptor_name, layout.descriptor(disk.files))
    vmx = layout.vmx_name(point.meta)
    if vmx is not None:
        _seed(files_dir / vmx, layout.vmx(point.meta, files))
    return PointFileSystem(disks, files_dir)


def _seed(path: Path, text: str) -> None:
    """Write `text` to `path` unless it exists: what ESXi changed in it since the first mount stays."""
    if path.exists():
        return
    temp = path.with_name(f".{path.name}.new")
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def clear_stale_mount(mount: Path) -> None:
    """Unmount (lazily) a FUSE mount whose server died: its folder answers ENOTCONN to everything."""
    try:
        os.listdir(mount)  # not a stat: the kernel may answer that from its attribute cache
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)


def unmount(mount: Path) -> None:
    """Make sure nothing is mounted at `mount` any more (libfuse normally unmounted it already)."""
    if os.path.ismount(mount):
        subprocess.run(["fusermount3", "-u", str(mount)], check=False)
    if os.path.ismount(mount):
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)


class StatusWriter(threading.Thread):
    """Writes OVERLAY/status.json once the view is mounted (the supervisor's sign that it serves),
    then every `every` seconds: bytes read from the store, overlay size (PointFileSystem.status)."""

    def __init__(self, operations: PointFileSystem, request: Request, every: float) -> None:
        super().__init__(name="instant-status", daemon=True)
        self.operations, self.request, self.every = operations, request, every
        self.stopping = threading.Event()
        self.path = request.overlay / "status.json"

    def run(self) -> None:
        written = False
        while not self.stopping.wait(self.every if written else 0.05):
            if written or os.path.ismount(self.request.mount):
                written = self._write()

    def _write(self) -> bool:
        try:
            document = {"point": self.request.point, "pid": os.getpid(), "mount": str(self.request.mount),
                        "updated": time.time(), **self.operations.status()}  # fmt: skip
            temp = self.path.with_name("status.json.new")
            temp.write_text(json.dumps(document, sort_keys=True))
            os.replace(temp, self.path)
        except OSError as exc:  # a full overlay file system, say: the status is late, serving goes on
            log.warning("status not written: %s", exc)
        return True


def serve(request: Request, status_every: float = STATUS_EVERY) -> None:
    """Mount and serve until a signal ends the loop; the mount is gone when this returns."""
    clear_stale_mount(request.mount)
    request.mount.mkdir(parents=True, exist_ok=True)
    operations = prepare(request)
    if any(request.mount.iterdir()):
        raise Unservable(f"{request.mount} is not empty: a view is mounted only on an empty folder.")
    (request.overlay / "status.json").unlink(missing_ok=True)  # a previous run's: not this one's sign
    status = StatusWriter(operations, request, status_every)
    status.start()
    try:
        # fsname names the mount in /proc/mounts, so leftovers can be found by it.
        mfusepy.FUSE(operations, str(request.mount), foreground=True, fsname=f"vmb-point-{request.point}")
    finally:
        status.stopping.set()
        status.join()
        unmount(request.mount)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instant.view.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="the local recovery point store")
    parser.add_argument("--vault-config", type=Path, help="JSON file describing the vault (mode 0600), - for stdin")
    parser.add_argument("--point", required=True, help="the recovery point's id")
    parser.add_argument("--mount", type=Path, required=True, help="an empty folder to mount the view on")
    parser.add_argument("--overlay", type=Path, required=True, help="where this point's writes are kept")
    parser.add_argument("--cache-chunks", type=int, default=CACHE_CHUNKS, help="decoded 4 MiB chunks to cache")
    parser.add_argument("--shared-cache", type=Path, help="a folder where vault chunks are kept for every server")
    parser.add_argument("--status-every", type=float, default=STATUS_EVERY, help="seconds between status.json writes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    request = Request(
        args.store, args.point, args.mount, args.overlay, args.vault_config, args.cache_chunks, args.shared_cache
    )
    try:
        serve(request, args.status_every)
    except Unservable as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
