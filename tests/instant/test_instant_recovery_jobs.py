"""Instant recovery end to end against the simulator, a real FUSE server and a real nfs-ganesha:
a backed-up VM started from its point, read through the datastore API and over NFS, written to, then
stopped or migrated, and a start that fails half-way; nothing is left behind afterwards."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection
from django.utils import timezone
from pyVmomi import vim

from audit.models import AuditEntry
from instant import actions, reaper, supervisor
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.models import Datastore, Host, VirtualMachine
from jobs.models import JobRun
from tests.factories.instant import instant_dir
from tests.factories.protection import BACKUP_LAB_VMS, back_up, padded_sha256, protect_simulator
from tests.factories.simulator import prod_spec
from tests.instant.conftest import nfs_cat, store_state
from tests.waiting import wait_until
from tools import diskimages
from tools.simulator import Simulator
from vault import actions as vault_actions
from vault import pins
from vault.actions import VaultActionError
from vault.models import RecoveryPoint

MiB = 1024 * 1024
LINUX_VM = next(vm for vm in BACKUP_LAB_VMS if vm["name"] == "lnx-01")
pytestmark = pytest.mark.django_db(transaction=True)  # the supervisor's thread sees committed rows only


@pytest.fixture
def lab(vcsim_factory: Any, settings: Any, tmp_path: Path) -> Iterator[Lab]:
    with instant_dir(settings):
        yield start_lab(vcsim_factory, settings, tmp_path)


def start_lab(vcsim_factory: Any, settings: Any, tmp_path: Path) -> Lab:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    # lnx-01 (a real ext4 disk, a NIC on "VM Network") is recovered; win-01 is there for its name.
    spec = prod_spec({**LINUX_VM, "nics": ["VM Network"]}, {"name": "win-01", "disks_mb": [1]})
    sim = vcsim_factory(spec, tls=True)
    image = diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40)
    sim.upload_disk_image("lnx-01", 0, image)
    protect_simulator(sim, parallelism=1)
    return Lab(sim, image)


class Lab(NamedTuple):
    sim: Simulator
    image: Path  # lnx-01's disk


@pytest.fixture
def supervising() -> Iterator[supervisor.Supervisor]:
    """The supervisor's loop, in a thread of the test (every 0.2 s), as `make run` runs the command."""
    running = supervisor.Supervisor()
    stopping = threading.Event()

    def loop() -> None:
        try:
            while not stopping.wait(0.2):
                running.reconcile()
        finally:
            running.shutdown()
            db_connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield running
    stopping.set()
    thread.join(60)


@pytest.fixture
def backed_up(
    run_worker: Callable[[], None], django_capture_on_commit_callbacks: Any
) -> Callable[[str], RecoveryPoint]:
    def back_up_now(vm_name: str) -> RecoveryPoint:
        run = back_up(vm_name, run_worker, django_capture_on_commit_callbacks)
        assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
        return RecoveryPoint.objects.filter(vm__name=vm_name).latest("created")

    return back_up_now


def connect(sim: Any) -> vsphere.Connection:
    return vsphere.connect(vsphere.Endpoint(sim.host, sim.port, thumbprint=sim.thumbprint), sim.username, sim.password)


def run_job(run: JobRun, run_worker: Callable[[], None]) -> JobRun:
    run_worker()
    run.refresh_from_db()
    return run


def started(point: RecoveryPoint, run_worker: Callable[[], None], user: Any, **options: Any) -> InstantRecovery:
    recovery = actions.start_instant_recovery(user, point, **options)
    assert recovery.job is not None
    run = run_job(recovery.job, run_worker)
    recovery.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback, recovery.error)
    return recovery


def datastore_names(sim: Any) -> set[str]:
    with connect(sim) as conn:
        return {ds.name for dc in conn.content.rootFolder.childEntity for ds in dc.datastore}


def vm_names(sim: Any) -> set[str]:
    with connect(sim) as conn:
        assert conn.content.viewManager is not None
        view = conn.content.viewManager.CreateContainerView(conn.content.rootFolder, [vim.VirtualMachine], True)
        return {vm.name for vm in view.view}


def assert_nothing_left(sim: Any, recovery: InstantRecovery, running: supervisor.Supervisor) -> None:
    def torn_down() -> bool:
        recovery.refresh_from_db()
        return not recovery.directory.exists() and recovery.serve_pid is None

    wait_until(torn_down, what="the supervisor removed the mount, the export and the overlay")
    assert recovery.datastore_name not in datastore_names(sim)
    assert recovery.vm_name not in vm_names(sim)
    assert running.children == {} and running.ganesha is None  # no server, no ganesha (no export)
    with open("/proc/mounts") as mounts:
        assert f"vmb-point-{recovery.point_id}" not in mounts.read()


def flat_sha256(conn: vsphere.Connection, datastore: str, path: str, size: int) -> str:
    digest = hashlib.sha256()
    with vsphere.DatastoreFile(conn, "DC", datastore, path, size=size) as f:
        buffer, offset = vsphere.read_buffer(), 0
        while offset < size:
            n = f.readinto(offset, buffer[: min(len(buffer), size - offset)])
            digest.update(buffer[:n])
            offset += n
    return digest.hexdigest()


def test_a_started_vm_runs_from_the_point_and_stopping_leaves_nothing_behind(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any, settings: Any
) -> None:
    sim, image = lab
    point = backed_up("lnx-01")
    before = store_state(settings.BACKUP_STORE_DIR)

    recovery = started(point, run_worker, admin, name="lnx-01-back")

    assert recovery.state == InstantRecovery.State.RUNNING and recovery.vm_moref
    with connect(sim) as conn:
        assert vsphere.power_state(conn, recovery.vm_moref) == "poweredOn"
        config = vsphere.vm_config(conn, recovery.vm_moref)
        (disk,) = config["disks"]
        assert [nic["start_connected"] for nic in config["nics"]] == [False] * len(config["nics"])
        datastore = str(recovery.datastore_name)
        assert disk["file_name"].startswith(f"[{datastore}] ")
        flat = disk["file_name"].split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")
        capacity = point.disks.get().capacity_bytes
        expected = padded_sha256(image, capacity)
        assert flat_sha256(conn, datastore, flat, capacity) == expected
        url = f"nfs://127.0.0.1{recovery.export_path}/{flat}?version=4&nfsport={settings.INSTANT_NFS_PORT}"
        assert hashlib.sha256(nfs_cat(url)).hexdigest() == expected
        note = b"written by the recovered VM\n" * 100
        with vsphere.DatastoreFile(conn, "DC", datastore, "note.txt") as f:
            f.write(io.BytesIO(note), len(note))
        # A guest's write into its disk: a ranged PUT (the simulator's extension) into the flat extent.
        block = os.urandom(64 * 1024)
        content_range = f"bytes {MiB}-{MiB + len(block) - 1}/{capacity}"
        sim._put({"datacenter": "DC"}, {"datastore": datastore}, flat, block, {"Content-Range": content_range})
        with vsphere.DatastoreFile(conn, "DC", datastore, flat, size=capacity) as f:
            buffer = bytearray(len(block))
            assert f.readinto(MiB, buffer) == len(block) and bytes(buffer) == block
    assert (recovery.overlay_dir / "files" / "note.txt").read_bytes() == note
    assert wait_until(lambda: InstantRecovery.objects.get(pk=recovery.pk).overlay_bytes >= len(block), what="overlay")
    assert store_state(settings.BACKUP_STORE_DIR) == before  # no chunk changed, none added
    assert AuditEntry.objects.filter(action="instant.start", actor__username=admin.username).exists()
    assert pins.is_pinned(point)  # no prune, delete or GC takes the point away while the VM runs from it
    with pytest.raises(VaultActionError):
        vault_actions.delete_point(admin, point)

    run = run_job(actions.stop(admin, recovery), run_worker)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPED
    assert_nothing_left(sim, recovery, supervising)
    assert not pins.is_pinned(point)
    vault_actions.delete_point(admin, point)  # a finished recovery's row does not hold its point
    recovery.refresh_from_db()
    assert recovery.point is None and recovery.point_created == point.created


def test_migrating_moves_byte_identical_disks_and_leaves_nothing_behind(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    sim, image = lab
    point = backed_up("lnx-01")
    recovery = started(point, run_worker, admin, name="lnx-01-moved", connect_network=True)
    with connect(sim) as conn:
        nics = vsphere.vm_config(conn, recovery.vm_moref)["nics"]
    assert nics and all(nic["start_connected"] for nic in nics), nics

    run = run_job(actions.migrate(admin, recovery, Datastore.objects.get(name="ds1")), run_worker)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.FINISHED
    with connect(sim) as conn:
        assert vsphere.power_state(conn, recovery.vm_moref) == "poweredOn"
        (disk,) = vsphere.vm_config(conn, recovery.vm_moref)["disks"]
        assert disk["file_name"].startswith("[ds1] ")
        flat = disk["file_name"].split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")
        capacity = point.disks.get().capacity_bytes
        assert flat_sha256(conn, "ds1", flat, capacity) == padded_sha256(image, capacity)
    assert recovery.datastore_name not in datastore_names(sim)
    assert not pins.is_pinned(point)
    wait_until(
        lambda: not recovery.directory.exists() and supervising.ganesha is None,
        what="the supervisor removed the mount, the overlay and the export",
    )
    assert supervising.children == {}


def test_a_start_failing_half_way_leaves_nothing_behind(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any, tmp_path: Path
) -> None:
    sim = lab.sim
    point = backed_up("lnx-01")
    recovery = actions.start_instant_recovery(admin, point, name="lnx-01-clash")
    # The datastore's name is taken in vCenter by the time the job mounts the export.
    other = Path(tempfile.mkdtemp(prefix="vmb-other-"))
    with connect(sim) as conn:
        host = recovery.host_moref
        taken = vsphere.mount_nas_datastore(conn, host, str(recovery.datastore_name), "127.0.0.1", str(other))
    try:
        assert recovery.job is not None
        run = run_job(recovery.job, run_worker)
        assert run.status == JobRun.Status.FAILED
        assert "exists already" in run.error
        recovery.refresh_from_db()
        assert recovery.state == InstantRecovery.State.FAILED and not recovery.vm_moref
        assert not pins.is_pinned(point)

        def torn_down() -> bool:
            recovery.refresh_from_db()
            return not recovery.directory.exists() and recovery.serve_pid is None

        wait_until(torn_down, what="the supervisor removed the mount, the export and the overlay")
        assert recovery.vm_name not in vm_names(sim)
        assert supervising.children == {} and supervising.ganesha is None
    finally:
        with connect(sim) as conn:
            vsphere.unmount_datastore(conn, host, taken.moref)
        os.rmdir(other)


def test_a_name_in_use_is_refused_before_anything_is_queued(lab: Any, backed_up: Any, admin: Any) -> None:
    point = backed_up("lnx-01")
    with pytest.raises(actions.InstantRefused, match="win-01 exists already"):
        actions.start_instant_recovery(admin, point, name="win-01")
    assert not InstantRecovery.objects.exists()


def test_the_command_line_starts_lists_migrates_and_stops(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    sim = lab.sim
    point = backed_up("lnx-01")
    host = Host.objects.get()
    out = io.StringIO()
    call_command(
        "instant-recovery", "start", "lnx-01", "--name", "lnx-01-cli", "--host", host.inventory_path, stdout=out
    )
    recovery = InstantRecovery.objects.get()
    assert f"Instant recovery {recovery.pk}: lnx-01-cli on {host.name}" in out.getvalue()
    assert recovery.point == point and recovery.host_moref == host.moref
    run_worker()

    out = io.StringIO()
    call_command("instant-recovery", "list", "--json", stdout=out)
    (row,) = json.loads(out.getvalue())
    assert (row["id"], row["vm"], row["source_vm"], row["state"]) == (recovery.pk, "lnx-01-cli", "lnx-01", "running")
    out = io.StringIO()
    call_command("instant-recovery", "list", stdout=out)
    assert "lnx-01-cli" in out.getvalue() and "running" in out.getvalue()
    with pytest.raises(CommandError, match="no instant recovery 999"):
        call_command("instant-recovery", "stop", "999")

    # --wait follows the job while a worker runs it (here: this thread, the command in another).
    out = io.StringIO()
    waiting = threading.Thread(
        target=call_command, args=("instant-recovery", "stop", str(recovery.pk), "--wait"), kwargs={"stdout": out}
    )
    waiting.start()
    wait_until(lambda: JobRun.objects.filter(kind=actions.STOP_KIND).exists(), what="the stop is queued")
    run_worker()
    waiting.join(60)
    assert "Stop lnx-01-cli: job" in out.getvalue()
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPED
    assert_nothing_left(sim, recovery, supervising)
    with pytest.raises(CommandError, match="not running from backup"):
        call_command("instant-recovery", "migrate", str(recovery.pk), "--datastore", "ds1")


def test_the_command_line_refuses_a_name_in_use_and_an_unknown_host(lab: Any, backed_up: Any) -> None:
    backed_up("lnx-01")
    with pytest.raises(CommandError, match="win-01 exists already"):
        call_command("instant-recovery", "start", "lnx-01", "--name", "win-01")
    with pytest.raises(CommandError, match="host"):
        call_command("instant-recovery", "start", "lnx-01", "--host", "no-such-host")
    assert not InstantRecovery.objects.exists()


def test_a_start_whose_worker_died_can_be_stopped_and_leaves_nothing_behind(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    point = backed_up("lnx-01")
    recovery = started(point, run_worker, admin, name="lnx-01-orphan")
    # As if the worker was killed after powering the VM on: the row still says starting and the
    # reaper has marked the job errored.
    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.STARTING)
    assert recovery.job is not None
    JobRun.objects.filter(pk=recovery.job.pk).update(status=JobRun.Status.ERRORED)
    recovery.refresh_from_db()

    run = run_job(actions.stop(admin, recovery), run_worker)

    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    assert_nothing_left(lab.sim, recovery, supervising)
    assert not pins.is_pinned(point)


def test_a_start_whose_worker_died_is_stopped_by_the_reaper(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    point = backed_up("lnx-01")
    recovery = started(point, run_worker, admin, name="lnx-01-abandoned")
    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.STARTING)
    assert recovery.job is not None
    JobRun.objects.filter(pk=recovery.job.pk).update(status=JobRun.Status.ERRORED)

    assert reaper.stop_abandoned_starts() == [recovery.pk]
    run_worker()

    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.STOPPED
    assert_nothing_left(lab.sim, recovery, supervising)
    assert AuditEntry.objects.filter(action="instant.stop", actor__isnull=True).exists()


def test_a_start_still_running_cannot_be_stopped(lab: Any, backed_up: Any, admin: Any) -> None:
    recovery = actions.start_instant_recovery(admin, backed_up("lnx-01"), name="lnx-01-busy")
    with pytest.raises(actions.InstantRefused, match="not running from backup"):
        actions.stop(admin, recovery)


def test_a_vm_gone_from_vcenter_comes_back_as_itself_and_a_copy_gets_new_uuids(
    lab: Any, backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    point = backed_up("lnx-01")
    original = point.config["instance_uuid"]
    with connect(lab.sim) as conn:  # an administrator removed it from vCenter; the next sync noticed
        vsphere.power_off_and_unregister(conn, point.vm.moref)
    VirtualMachine.objects.filter(pk=point.vm_id).update(removed_at=timezone.now())
    point.vm.refresh_from_db()

    recovery = started(point, run_worker, admin)

    assert recovery.vm_name == "lnx-01" and recovery.keep_identity
    with connect(lab.sim) as conn:
        config = vsphere.vm_config(conn, recovery.vm_moref)
    assert config["instance_uuid"] == original and config["bios_uuid"] == point.config["bios_uuid"]

    # A second one from the same point while the first runs: vCenter has that identity, so a copy.
    copy = started(point, run_worker, admin, name="lnx-01-copy")
    with connect(lab.sim) as conn:
        assert vsphere.vm_config(conn, copy.vm_moref)["instance_uuid"] != original
    for one in (copy, recovery):
        assert run_job(actions.stop(admin, one), run_worker).status == JobRun.Status.SUCCEEDED
    wait_until(lambda: InstantRecovery.objects.filter(serve_pid__isnull=False).count() == 0, what="both torn down")
    assert_nothing_left(lab.sim, copy, supervising)
    assert_nothing_left(lab.sim, recovery, supervising)
