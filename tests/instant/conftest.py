"""Fixtures for serving recovery points: a store holding a point of real NTFS and ext4 disk images
(tools/diskimages.py), the view served by `python -m instant.view.serve` in its own process, and a
private nfs-ganesha exporting it. No database: the view is plain Python over the store."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from instant.nfs import Ganesha
from tests.factories.recovery import LINUX, WINDOWS
from tests.waiting import wait_until
from tools import diskimages
from tools.services import free_port
from vault import engine
from vault.engine.format import decode_chunk_file

ROOT = Path(__file__).resolve().parent.parent.parent
POINT = "win-01.2026-12-03T0300"


def captured_config() -> dict[str, Any]:
    """A VM configuration shaped as inventory.vcenter.vm_config captures it (the manifest's meta["config"])."""
    return {
        "name": "win-01",
        "guest_id": "windows2019srv_64Guest",
        "firmware": "efi",
        "hardware_version": "vmx-19",
        "num_cpu": 2,
        "cores_per_socket": 1,
        "memory_mb": 4096,
        "controllers": [{"type": "VirtualLsiLogicSASController", "kind": "lsilogic-sas", "key": 1000, "bus_number": 0}],
        "disks": [
            {"key": 2000, "controller_key": 1000, "unit_number": 0, "path": "win-01/win-01.vmdk"},
            {"key": 2001, "controller_key": 1000, "unit_number": 1, "path": "win-01/win-01_1.vmdk"},
        ],
        "nics": [{"type": "VirtualVmxnet3", "network": "VM Network", "address_type": "assigned", "connected": True}],
    }


@pytest.fixture(scope="session")
def images() -> dict[str, Path]:
    """The point's disks by store key: an NTFS (GPT) and an ext4 (MBR) image, built once and cached."""
    return {
        "2000": diskimages.build_ntfs_disk(WINDOWS, size_mib=48),
        "2001": diskimages.build_ext4_disk(LINUX, size_mib=40),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_point(store_dir: Path, images: dict[str, Path], point_id: str = POINT) -> engine.Store:
    store = engine.Store(store_dir)
    with store.begin_point(point_id) as pending:
        for key, image in images.items():
            with engine.FileSource(image) as source:
                engine.backup_disk(pending, key, source)
        pending.commit({"vm": "win-01", "config": captured_config()})
    return store


@pytest.fixture
def store_dir(tmp_path: Path, images: dict[str, Path]) -> Path:
    make_point(tmp_path / "store", images)
    return tmp_path / "store"


def store_state(store_dir: Path) -> dict[str, str]:
    """Every file of the store by relative path, with its SHA-256: what must not change."""
    return {str(p.relative_to(store_dir)): sha256(p) for p in sorted(store_dir.rglob("*")) if p.is_file()}


def assert_chunks_hash_to_their_names(store_dir: Path) -> int:
    chunks = [p for p in (store_dir / "chunks").rglob("*") if p.is_file()]
    for path in chunks:
        decode_chunk_file(path.read_bytes(), bytes.fromhex(path.name))  # ChunkCorrupt if not
    assert engine.verify_point(engine.Store(store_dir), POINT).ok
    return len(chunks)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    mount: Path
    overlay: Path

    def flat(self, name: str) -> Path:
        return self.mount / f"{name}-flat.vmdk"

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it: it must unmount and exit 0."""
        self.process.send_signal(signal.SIGTERM)
        _out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err.decode()
        assert not os.path.ismount(self.mount)


def serve_command(store_dir: Path, mount: Path, overlay: Path, *extra: str, point: str = POINT) -> list[str]:
    return [sys.executable, "-m", "instant.view.serve", "--store", str(store_dir), "--point", point,
            "--mount", str(mount), "--overlay", str(overlay), *extra]  # fmt: skip


def start_serving(store_dir: Path, mount: Path, overlay: Path, *extra: str, stdin: bytes | None = None) -> Served:
    with contextlib.suppress(FileExistsError):  # a dead mount is there but fails is_dir (ENOTCONN)
        mount.mkdir(parents=True)
    command = serve_command(store_dir, mount, overlay, *extra)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.PIPE if stdin else None}
    process = subprocess.Popen(command, cwd=ROOT, **pipes)
    if stdin is not None and process.stdin is not None:
        process.stdin.write(stdin)
        process.stdin.close()
        process.stdin = None  # communicate() would flush it again
    served = Served(process, mount, overlay)

    def mounted() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read().decode()}")
        if not os.path.ismount(mount):
            return False
        try:
            os.listdir(mount)
        except OSError as exc:  # the dead mount of a killed server, until the new one clears it
            if exc.errno != errno.ENOTCONN:
                raise
            return False
        try:  # the server's own sign that it serves (a previous run's names another pid)
            return json.loads((overlay / "status.json").read_text())["pid"] == process.pid
        except FileNotFoundError:
            return False

    wait_until(mounted, what=f"the point is mounted on {mount}")
    return served


@pytest.fixture
def serving(tmp_path: Path, store_dir: Path) -> Iterator[Served]:
    served = start_serving(store_dir, tmp_path / "mnt", tmp_path / "overlay", "--status-every", "0.2")
    yield served
    if served.process.poll() is None:
        served.stop()
    elif os.path.ismount(served.mount):  # a test killed it and failed before serving again
        subprocess.run(["fusermount3", "-u", "-z", str(served.mount)], check=False)


@pytest.fixture(scope="module")
def ganesha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ganesha]:
    server = Ganesha(tmp_path_factory.mktemp("ganesha"), free_port()).start()
    yield server
    server.stop()


def nfs_cat(url: str) -> bytes:
    return subprocess.run(["nfs-cat", url], check=True, capture_output=True, timeout=120).stdout
