"""Issue 16's acceptance, end to end against the simulator, a real FUSE server and a real nfs-ganesha:
a backed-up VM with an NTFS and an ext4 disk runs from its point (powered on, each disk read through
the datastore HTTP API and over NFS byte-identical to the point), a guest's writes land in the overlay
and never in the store, migrating leaves the migrated state's disks on the target and nothing behind;
and `make run` restarted while a recovery runs (the real `manage.py instant-supervisor` command,
SIGTERMed and started again) brings the export back with the overlay's writes kept."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from pyVmomi import vim

from instant import actions, supervisor
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.models import Datastore
from jobs.models import JobRun
from tests.factories.instant import instant_dir
from tests.factories.protection import BackupLab, start_backup_lab
from tests.instant.conftest import ROOT, nfs_cat, store_state
from tests.instant.test_instant_recovery_jobs import (
    backed_up,
    connect,
    datastore_names,
    flat_sha256,
    run_job,
    started,
    supervising,
    vm_names,
)
from tests.waiting import wait_until
from vault import engine, pins
from vault.engine.format import decode_chunk_file
from vault.models import RecoveryPoint

__all__ = ["backed_up", "supervising"]  # fixtures of the jobs tests, used here by name

MiB = 1024 * 1024
pytestmark = pytest.mark.django_db(transaction=True)  # the supervisor (thread or command) sees committed rows only


@pytest.fixture
def two_disk_lab(vcsim_factory: Any, settings: Any, tmp_path: Path) -> Iterator[BackupLab]:
    """win-01 with an NTFS (48 MiB) and an ext4 (40 MiB) disk, lnx-01 with one ext4 disk, protected."""
    with instant_dir(settings):
        yield start_backup_lab(vcsim_factory, settings, tmp_path)


class Disk:
    """One disk of the recovered VM: its flat extent on a datastore and the bytes the point holds,
    with the writes made to it since."""

    def __init__(self, flat: str, image: Path, capacity: int) -> None:
        self.flat, self.capacity = flat, capacity
        self.content = bytearray(image.read_bytes())
        self.content.extend(bytes(capacity - len(self.content)))

    def write(self, offset: int, data: bytes) -> None:
        self.content[offset : offset + len(data)] = data

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def disks_of(conn: vsphere.Connection, recovery: InstantRecovery, lab: BackupLab, vm: str) -> list[Disk]:
    """The recovered VM's disks (by device key, as the point's) with the images they came from."""
    point = recovery.point
    assert point is not None
    capacities = [d.capacity_bytes for d in point.disks.order_by("key")]
    files = [d["file_name"] for d in vsphere.vm_config(conn, recovery.vm_moref)["disks"]]
    assert len(files) == len(capacities), files
    disks = []
    for index, (file_name, capacity) in enumerate(zip(files, capacities, strict=True)):
        assert file_name.startswith(f"[{recovery.datastore_name}] "), file_name
        flat = file_name.split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")
        disks.append(Disk(flat, lab.images[(vm, index)], capacity))
    return disks


def pyvmomi_power_state(sim: Any, name: str) -> str:
    """The VM's runtime.powerState as vCenter reports it to pyVmomi, found by its name."""
    with connect(sim) as conn:
        assert conn.content.viewManager is not None
        view = conn.content.viewManager.CreateContainerView(conn.content.rootFolder, [vim.VirtualMachine], True)
        (vm,) = [vm for vm in view.view if vm.name == name]
        return str(vm.runtime.powerState)


def over_nfs(recovery: InstantRecovery, name: str) -> bytes:
    port = django_settings.INSTANT_NFS_PORT
    return nfs_cat(f"nfs://127.0.0.1{recovery.export_path}/{name}?version=4&nfsport={port}")


def guest_write(sim: Any, datastore: str, disk: Disk, offset: int, data: bytes) -> None:
    """A guest's write into its disk: a ranged PUT (the simulator's extension) into the flat extent."""
    content_range = f"bytes {offset}-{offset + len(data) - 1}/{disk.capacity}"
    sim._put({"datacenter": "DC"}, {"datastore": datastore}, disk.flat, data, {"Content-Range": content_range})
    disk.write(offset, data)


def write_file(conn: vsphere.Connection, datastore: str, path: str, data: bytes) -> None:
    with vsphere.DatastoreFile(conn, "DC", datastore, path) as f:
        f.write(io.BytesIO(data), len(data))


def read_file(conn: vsphere.Connection, datastore: str, path: str, size: int) -> bytes:
    buffer = bytearray(size)
    with vsphere.DatastoreFile(conn, "DC", datastore, path, size=size) as f:
        assert f.readinto(0, buffer) == size
    return bytes(buffer)


def assert_every_chunk_hashes_to_its_name(store_dir: Path, point: RecoveryPoint) -> None:
    chunks = [p for p in (store_dir / "chunks").rglob("*") if p.is_file()]
    assert chunks
    for path in chunks:
        decode_chunk_file(path.read_bytes(), bytes.fromhex(path.name))  # ChunkCorrupt if not
    assert engine.verify_point(engine.Store(store_dir), str(point.pk)).ok


def assert_disks_read_as(conn: vsphere.Connection, recovery: InstantRecovery, disks: list[Disk]) -> None:
    """Each disk, read through the datastore HTTP API and over NFS, is byte for byte what it should hold."""
    datastore = str(recovery.datastore_name)
    for disk in disks:
        assert flat_sha256(conn, datastore, disk.flat, disk.capacity) == disk.sha256, disk.flat
        assert hashlib.sha256(over_nfs(recovery, disk.flat)).hexdigest() == disk.sha256, disk.flat


def test_a_vm_with_ntfs_and_ext4_disks_runs_from_its_point_and_migrates_with_its_writes(
    two_disk_lab: BackupLab,
    backed_up: Callable[[str], RecoveryPoint],
    run_worker: Any,
    supervising: supervisor.Supervisor,
    admin: Any,
    settings: Any,
) -> None:
    sim = two_disk_lab.sim
    point = backed_up("win-01")
    assert point.disks.count() == 2
    before = store_state(settings.BACKUP_STORE_DIR)

    recovery = started(point, run_worker, admin, name="win-01-back")

    assert recovery.state == InstantRecovery.State.RUNNING
    assert pyvmomi_power_state(sim, "win-01-back") == "poweredOn"
    datastore = str(recovery.datastore_name)
    note = b"written by the recovered VM\n" * 100
    with connect(sim) as conn:
        disks = disks_of(conn, recovery, two_disk_lab, "win-01")
        assert_disks_read_as(conn, recovery, disks)  # the NTFS and the ext4 disk, as the point holds them

        # Writes through the datastore: into each disk (not 4 KiB aligned) and a new file.
        for n, disk in enumerate(disks):
            guest_write(sim, datastore, disk, MiB + 1000 * (n + 1), os.urandom(64 * 1024 + 123))
        write_file(conn, datastore, "note.txt", note)
        assert_disks_read_as(conn, recovery, disks)  # the writes are read back, through both doors
        assert read_file(conn, datastore, "note.txt", len(note)) == note
    assert (recovery.overlay_dir / "files" / "note.txt").read_bytes() == note
    written = wait_until(
        lambda: InstantRecovery.objects.get(pk=recovery.pk).overlay_bytes >= 2 * 64 * 1024,
        what="the overlay grew by the writes",
    )
    assert written
    assert store_state(settings.BACKUP_STORE_DIR) == before  # no chunk changed, none added
    assert_every_chunk_hashes_to_its_name(settings.BACKUP_STORE_DIR, point)

    run = run_job(actions.migrate(admin, recovery, Datastore.objects.get(name="ds1")), run_worker)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.FINISHED
    assert pyvmomi_power_state(sim, "win-01-back") == "poweredOn"
    with connect(sim) as conn:
        moved = vsphere.vm_config(conn, recovery.vm_moref)["disks"]
        assert [d["file_name"].split("] ", 1)[0] for d in moved] == ["[ds1"] * len(disks)
        for disk, config in zip(disks, moved, strict=True):
            flat = config["file_name"].split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")
            assert flat_sha256(conn, "ds1", flat, disk.capacity) == disk.sha256  # the migrated state
    assert_data_path_gone(sim, recovery, supervising)
    assert not pins.is_pinned(point)
    assert store_state(settings.BACKUP_STORE_DIR) == before


def assert_data_path_gone(sim: Any, recovery: InstantRecovery, running: supervisor.Supervisor) -> None:
    """After a migrate the VM stays; its NAS datastore, export, mount and overlay do not."""

    def torn_down() -> bool:
        recovery.refresh_from_db()
        return not recovery.directory.exists() and recovery.serve_pid is None

    wait_until(torn_down, what="the supervisor removed the mount, the export and the overlay")
    assert recovery.datastore_name not in datastore_names(sim)
    assert running.children == {} and running.ganesha is None
    with open("/proc/mounts") as mounts:
        assert str(recovery.directory) not in mounts.read()


# `make run` restarted ------------------------------------------------------------------------------


def nfs_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", django_settings.INSTANT_NFS_PORT), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def supervisor_command() -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py instant-supervisor` as `make run` runs it, on this test's database, store and
    INSTANT_DIR; SIGTERMed on the way out, as make run's shutdown does, and it must exit 0."""
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STORE_DIR": str(django_settings.BACKUP_STORE_DIR),
        "INSTANT_DIR": str(django_settings.INSTANT_DIR),
        "INSTANT_NFS_PORT": str(django_settings.INSTANT_NFS_PORT),
    }
    command = subprocess.Popen(
        [sys.executable, "manage.py", "instant-supervisor", "--every", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield command
        assert command.poll() is None, command.communicate()
        command.send_signal(signal.SIGTERM)
        _out, err = command.communicate(timeout=60)
        assert command.returncode == 0, err.decode()
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()


def test_make_run_restarted_while_a_recovery_runs_brings_its_datastore_back_with_its_writes(
    two_disk_lab: BackupLab,
    backed_up: Callable[[str], RecoveryPoint],
    run_worker: Any,
    admin: Any,
    settings: Any,
) -> None:
    sim = two_disk_lab.sim
    point = backed_up("lnx-01")
    with supervisor_command():
        recovery = started(point, run_worker, admin, name="lnx-01-back")
        datastore = str(recovery.datastore_name)
        with connect(sim) as conn:
            (disk,) = disks_of(conn, recovery, two_disk_lab, "lnx-01")
            guest_write(sim, datastore, disk, 3 * MiB + 7, os.urandom(32 * 1024))
            assert_disks_read_as(conn, recovery, [disk])
        first = recovery.serve_pid
        assert first is not None and nfs_answers()

    # make run is down: the servers unmounted, ganesha stopped, the overlay kept.
    assert supervisor.start_ticks(first) is None and not nfs_answers()
    assert not os.path.ismount(recovery.export_path) and (recovery.overlay_dir / "disks").is_dir()
    with connect(sim) as conn, pytest.raises(vsphere.NotFound, match="does not exist"):
        flat_sha256(conn, datastore, disk.flat, disk.capacity)
    with pytest.raises(subprocess.CalledProcessError):
        over_nfs(recovery, disk.flat)

    with supervisor_command():

        def served_again() -> bool:
            recovery.refresh_from_db()
            return recovery.serve_pid != first and supervisor.is_ready(recovery) and nfs_answers()

        wait_until(served_again, what="the command serves and exports the point again", timeout=60)
        assert recovery.state == InstantRecovery.State.RUNNING
        assert pyvmomi_power_state(sim, "lnx-01-back") == "poweredOn"
        with connect(sim) as conn:
            assert_disks_read_as(conn, recovery, [disk])  # the point, with the write made before
        kept = wait_until(
            lambda: InstantRecovery.objects.get(pk=recovery.pk).overlay_bytes >= 32 * 1024,
            what="the new server counts the overlay's earlier write",
        )
        assert kept

        run = run_job(actions.stop(admin, recovery), run_worker)

        assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
        recovery.refresh_from_db()
        assert recovery.state == InstantRecovery.State.STOPPED
        assert_nothing_left_by_the_command(sim, recovery)
    assert not pins.is_pinned(point)


def assert_nothing_left_by_the_command(sim: Any, recovery: InstantRecovery) -> None:
    """assert_nothing_left for a supervisor in another process: no server (the recorded pid gone),
    no ganesha (the NFS port closed), no mount, overlay, datastore or VM."""

    def torn_down() -> bool:
        recovery.refresh_from_db()
        return not recovery.directory.exists() and recovery.serve_pid is None and not nfs_answers()

    wait_until(torn_down, what="the command removed the mount, the export, the overlay and ganesha")
    assert recovery.datastore_name not in datastore_names(sim)
    assert recovery.vm_name not in vm_names(sim)
    with open("/proc/mounts") as mounts:
        assert str(recovery.directory) not in mounts.read()
