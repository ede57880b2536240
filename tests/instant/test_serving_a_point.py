"""A recovery point served as a datastore folder: its disks read byte for byte through the FUSE mount
and over NFS (nfs-ganesha, read with libnfs-utils' nfs-cat), writes kept in the overlay and never in
the store, and the overlay kept across an unmount and a restart after a kill."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from instant.nfs import Ganesha
from tests.instant.conftest import (
    POINT,
    Served,
    assert_chunks_hash_to_their_names,
    nfs_cat,
    sha256,
    start_serving,
    store_state,
)
from tests.waiting import wait_until
from tools.nfs_client import nfs_open
from vault import engine


def test_it_serves_each_disk_byte_identical_through_the_mount_and_over_nfs(
    serving: Served, images: dict[str, Path], ganesha: Ganesha
) -> None:
    assert sorted(os.listdir(serving.mount)) == [
        "win-01-flat.vmdk", "win-01.vmdk", "win-01.vmx", "win-01_1-flat.vmdk", "win-01_1.vmdk"
    ]  # fmt: skip
    export = ganesha.add(serving.mount)
    try:
        for name, key in (("win-01", "2000"), ("win-01_1", "2001")):
            assert serving.flat(name).stat().st_size == images[key].stat().st_size
            assert sha256(serving.flat(name)) == sha256(images[key])
            over_nfs = nfs_cat(ganesha.url(serving.mount, f"{name}-flat.vmdk"))
            assert hashlib.sha256(over_nfs).hexdigest() == sha256(images[key])
        assert nfs_cat(ganesha.url(serving.mount, "win-01.vmdk")) == (serving.mount / "win-01.vmdk").read_bytes()
    finally:
        ganesha.remove(export)


def test_the_folder_holds_vmfs_descriptors_and_the_captured_vmx(serving: Served, images: dict[str, Path]) -> None:
    descriptor = (serving.mount / "win-01.vmdk").read_text()
    sectors = images["2000"].stat().st_size // 512
    assert 'createType="vmfs"' in descriptor
    assert f'RW {sectors} VMFS "win-01-flat.vmdk"' in descriptor
    assert 'ddb.adapterType = "lsilogic"' in descriptor  # as vSphere writes an LSI SAS disk
    assert 'ddb.geometry.heads = "255"' in descriptor
    vmx = (serving.mount / "win-01.vmx").read_text()
    for line in (
        'displayName = "win-01"',
        'firmware = "efi"',
        'memSize = "4096"',
        'virtualHW.version = "19"',
        'scsi0.virtualDev = "lsisas1068"',
        'scsi0:0.fileName = "win-01.vmdk"',
        'scsi0:1.fileName = "win-01_1.vmdk"',
        'ethernet0.networkName = "VM Network"',
        'ethernet0.startConnected = "FALSE"',  # a copy must not meet its original on the network
    ):
        assert line in vmx.splitlines()
    assert "uuid.bios" not in vmx


def test_writes_land_in_the_overlay_and_never_in_the_store(
    serving: Served, store_dir: Path, images: dict[str, Path], ganesha: Ganesha
) -> None:
    before = store_state(store_dir)
    original = images["2000"].read_bytes()
    through_mount = os.urandom(10_000)  # unaligned, across three 4 KiB blocks
    with open(serving.flat("win-01"), "r+b") as f:
        f.seek(1_000_003)
        f.write(through_mount)
        f.flush()
        os.fsync(f.fileno())
    export = ganesha.add(serving.mount)
    try:
        through_nfs = os.urandom(5_000)
        with nfs_open(ganesha.url(serving.mount, "win-01-flat.vmdk")) as f:
            assert f.pwrite(through_nfs, 20_000_001) == len(through_nfs)
            f.fsync()
            assert f.pread(len(through_mount), 1_000_003) == through_mount
        expected = bytearray(original)
        expected[1_000_003 : 1_000_003 + len(through_mount)] = through_mount
        expected[20_000_001 : 20_000_001 + len(through_nfs)] = through_nfs
        wanted = hashlib.sha256(expected).hexdigest()
        assert sha256(serving.flat("win-01")) == wanted
        assert hashlib.sha256(nfs_cat(ganesha.url(serving.mount, "win-01-flat.vmdk"))).hexdigest() == wanted
    finally:
        ganesha.remove(export)
    assert sha256(serving.flat("win-01_1")) == sha256(images["2001"])  # the other disk is untouched
    assert store_state(store_dir) == before
    assert assert_chunks_hash_to_their_names(store_dir) > 0


def test_the_overlay_and_the_files_esxi_writes_survive_an_unmount(
    tmp_path: Path, serving: Served, store_dir: Path, images: dict[str, Path]
) -> None:
    written = os.urandom(4096)
    with open(serving.flat("win-01_1"), "r+b") as f:
        f.seek(8192)
        f.write(written)
    (serving.mount / "vmware.log").write_text("powered on\n")
    with open(serving.mount / "win-01.vmdk", "a") as f:
        f.write('ddb.toolsVersion = "12345"\n')
    serving.stop()
    again = start_serving(store_dir, serving.mount, serving.overlay)
    try:
        with open(again.flat("win-01_1"), "rb") as f:
            f.seek(8192)
            assert f.read(4096) == written
        expected = bytearray(images["2001"].read_bytes())
        expected[8192 : 8192 + 4096] = written
        assert sha256(again.flat("win-01_1")) == hashlib.sha256(expected).hexdigest()
        assert (again.mount / "vmware.log").read_text() == "powered on\n"
        assert (again.mount / "win-01.vmdk").read_text().endswith('ddb.toolsVersion = "12345"\n')
    finally:
        again.stop()


def test_a_killed_server_leaves_a_dead_mount_that_the_next_start_clears(
    serving: Served, store_dir: Path, images: dict[str, Path]
) -> None:
    written = os.urandom(4096)
    with open(serving.flat("win-01"), "r+b") as f:
        f.seek(4096 * 7)
        f.write(written)
        f.flush()
        os.fsync(f.fileno())  # acknowledged as durable before the kill
    serving.process.send_signal(signal.SIGKILL)
    serving.process.wait(30)
    try:
        os.listdir(serving.mount)  # a stat could be answered from the kernel's attribute cache
        raise AssertionError("a dead FUSE mount should answer ENOTCONN")
    except OSError as exc:
        assert exc.errno == errno.ENOTCONN  # Transport endpoint is not connected
    again = start_serving(store_dir, serving.mount, serving.overlay)
    try:
        with open(again.flat("win-01"), "rb") as f:
            f.seek(4096 * 7)
            assert f.read(4096) == written
        assert sha256(again.flat("win-01_1")) == sha256(images["2001"])
    finally:
        again.stop()


def test_it_answers_reads_from_many_threads_at_once(serving: Served, images: dict[str, Path]) -> None:
    """FUSE runs multi-threaded and a DiskReader is not thread-safe: each thread gets its own."""
    originals = {"win-01": images["2000"].read_bytes(), "win-01_1": images["2001"].read_bytes()}
    ranges = [(name, random.randrange(len(data) - 200_000), random.randrange(1, 200_000))
              for name, data in originals.items() for _ in range(100)]  # fmt: skip

    def read(item: tuple[str, int, int]) -> bool:
        name, offset, size = item
        with open(serving.flat(name), "rb", buffering=0) as f:
            f.seek(offset)
            return f.read(size) == originals[name][offset : offset + size]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, ranges))


def test_status_json_says_what_was_read_from_the_store_and_what_the_overlay_holds(
    serving: Served, store_dir: Path
) -> None:
    first = json.loads((serving.overlay / "status.json").read_text())  # written once mounted
    assert first["point"] == POINT and first["pid"] == serving.process.pid
    sha256(serving.flat("win-01_1"))
    with open(serving.flat("win-01_1"), "r+b") as f:
        f.seek(4096 * 3)
        f.write(b"z" * 8192)
    index = engine.Store(store_dir).open_point(POINT).index("2001")
    stored = sum(index.extent(i)[1] for i in range(len(index)) if index.digest(i) is not None)

    def updated() -> dict[str, object] | None:
        status = json.loads((serving.overlay / "status.json").read_text())
        done = status["written_blocks"] == {"win-01": 0, "win-01_1": 2} and status["bytes_read"] >= stored
        return status if done else None

    status = wait_until(updated, what="status.json counts the read and the write")
    assert status["local_reads"] >= 1 and status["vault_reads"] == 0
    assert isinstance(status["overlay_bytes"], int) and status["overlay_bytes"] >= 8192


def test_a_chunk_lost_while_served_fails_the_guests_read_with_eio_and_is_reported(
    tmp_path: Path, store_dir: Path
) -> None:
    store = engine.Store(store_dir)
    index = store.open_point(POINT).index("2001")
    last = max(i for i in range(len(index)) if index.digest(i) is not None)
    served = start_serving(store_dir, tmp_path / "mnt", tmp_path / "overlay", "--status-every", "0.2")
    try:
        digest = index.digest(last)
        assert digest is not None
        store.chunk_path(digest).unlink()  # after the up-front check: a disk failing under the server
        offset = index.extent(last)[0]
        with open(served.flat("win-01_1"), "rb", buffering=0) as f:
            f.seek(offset)
            try:
                f.read(4096)
                raise AssertionError("a read of a lost chunk should fail")
            except OSError as exc:
                assert exc.errno == errno.EIO

        def reported() -> dict[str, object] | None:
            status = json.loads((served.overlay / "status.json").read_text())
            return status if status["read_errors"] else None

        status = wait_until(reported, what="status.json reports the failed read")
        assert f"win-01_1-flat.vmdk at byte {offset}:" in str(status["last_error"])
        assert "missing" in str(status["last_error"])
    finally:
        served.stop()
