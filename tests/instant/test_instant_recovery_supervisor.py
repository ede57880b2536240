"""The instant-recovery supervisor against a real FUSE server and a real nfs-ganesha: it serves and
exports the points the database asks for, restarts a killed server and reopens its export so reads
over NFS resume, adopts a server an earlier supervisor started, says why a point cannot be served,
removes what is no longer wanted (leftovers of a crash included), and the command stops everything
cleanly on SIGTERM."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from alerts.evaluation import evaluate
from alerts.models import Alert
from instant import supervisor
from instant.models import InstantRecovery
from tests.factories.instant import instant_dir
from tests.factories.recovery import point_with_disks
from tests.instant.conftest import nfs_cat, store_state
from tests.instant.test_overlay import write_until_full
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.waiting import wait_until
from vault.engine.format import decode_chunk_file
from vault.models import RecoveryPoint

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def instant_settings(settings: Any, tmp_path: Path) -> Iterator[Any]:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    with instant_dir(settings):
        yield settings


@pytest.fixture
def point(instant_settings: Any, images: dict[str, Path]) -> RecoveryPoint:
    vm = create_test_vm(create_test_tree(create_test_vcenter(), ["Prod"])["Prod"], "win-01")
    return point_with_disks(vm, None, {2000: images["2000"]}, timezone.now())


def recovery_of(point: RecoveryPoint, state: str = InstantRecovery.State.STARTING) -> InstantRecovery:
    return InstantRecovery.objects.create(
        point=point, vm_name="win-01-instant", source_vm=point.vm, host_moref="host-1", host_name="esx01",
        folder_moref="group-v1", pool_moref="resgroup-1", state=state,
    )  # fmt: skip


@pytest.fixture
def running() -> Iterator[supervisor.Supervisor]:
    sup = supervisor.Supervisor()
    yield sup
    sup.shutdown()


def served(sup: supervisor.Supervisor, recovery: InstantRecovery) -> InstantRecovery:
    """Reconcile until the point is mounted by the recorded server and exported."""

    def ready() -> bool:
        sup.reconcile()
        recovery.refresh_from_db()
        return supervisor.is_ready(recovery)

    wait_until(ready, what="the supervisor serves and exports the point", timeout=60)
    return recovery


def flat_over_nfs(recovery: InstantRecovery) -> bytes:
    (flat,) = [p.name for p in recovery.export_path.glob("*-flat.vmdk")]
    port = django_settings.INSTANT_NFS_PORT
    return nfs_cat(f"nfs://127.0.0.1{recovery.export_path}/{flat}?version=4&nfsport={port}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def alive(pid: int | None) -> bool:
    return pid is not None and supervisor.start_ticks(pid) is not None  # None for a zombie too


def nfs_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", django_settings.INSTANT_NFS_PORT), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.django_db
def test_a_killed_server_is_restarted_and_reads_over_nfs_resume(
    point: RecoveryPoint, images: dict[str, Path], running: supervisor.Supervisor
) -> None:
    expected = sha256(images["2000"].read_bytes())
    recovery = served(running, recovery_of(point))
    assert sha256(flat_over_nfs(recovery)) == expected
    first = recovery.serve_pid
    assert first is not None

    os.kill(first, signal.SIGKILL)
    # Its threads end after the leader (a zombie meanwhile): wait until the process is reapable.
    wait_until(lambda: running.children[recovery.pk].poll() is not None, what="the server died")
    recovery = served(running, recovery)

    assert recovery.serve_pid != first
    assert sha256(flat_over_nfs(recovery)) == expected  # the export was reopened on the new mount
    assert recovery.restarts == 1 and "the server of its point exited" in recovery.restart_reason
    alert = open_alert(Alert.Kind.INSTANT_RESTARTED)
    assert alert.key == str(recovery.pk) and "reads resumed" in alert.detail

    def counted() -> bool:  # status.json is rewritten every 2 s; the supervisor copies it to the row
        running.reconcile()
        return InstantRecovery.objects.get(pk=recovery.pk).bytes_read > 0

    wait_until(counted, what="the bytes read are counted on the row")


@pytest.mark.django_db
def test_a_final_state_removes_the_export_the_mount_the_overlay_and_the_server(
    point: RecoveryPoint, running: supervisor.Supervisor
) -> None:
    recovery = served(running, recovery_of(point))
    pid = recovery.serve_pid
    (recovery.overlay_dir / "files" / "written.txt").write_text("a guest's file\n")

    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.STOPPED)
    running.reconcile()

    recovery.refresh_from_db()
    assert not recovery.directory.exists() and not os.path.ismount(recovery.export_path)
    assert (recovery.serve_pid, recovery.export_id) == (None, None)
    assert not alive(pid) and running.children == {}
    assert running.ganesha is None and not nfs_answers()


@pytest.mark.django_db
def test_a_new_supervisor_adopts_the_running_server(point: RecoveryPoint, running: supervisor.Supervisor) -> None:
    recovery = served(running, recovery_of(point))
    pid = recovery.serve_pid
    running.children.clear()  # as a supervisor that died: its servers run on in their own sessions
    if running.ganesha is not None:
        running.ganesha.stop()
        running.ganesha = None

    successor = supervisor.Supervisor()
    try:
        recovery = served(successor, recovery)
        assert recovery.serve_pid == pid and successor.children == {}
        InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.FAILED)
        successor.reconcile()
        assert not alive(pid) and not recovery.directory.exists()
    finally:
        successor.shutdown()


@pytest.mark.django_db
def test_a_point_that_cannot_be_served_is_not_retried_and_says_why(
    point: RecoveryPoint, running: supervisor.Supervisor, instant_settings: Any
) -> None:
    chunk = next(p for p in (Path(instant_settings.BACKUP_STORE_DIR) / "chunks").rglob("*") if p.is_file())
    chunk.unlink()
    recovery = recovery_of(point)

    def said_why() -> str:
        running.reconcile()
        recovery.refresh_from_db()
        return recovery.error

    error = wait_until(said_why, what="the supervisor records why the point cannot be served")
    assert "missing from the local store" in error
    running.reconcile()
    assert running.children == {} and running.ganesha is None


@pytest.mark.django_db
def test_the_dead_mount_of_a_killed_server_is_removed_when_its_recovery_ends(
    point: RecoveryPoint, running: supervisor.Supervisor
) -> None:
    recovery = served(running, recovery_of(point))
    os.kill(recovery.serve_pid or 0, signal.SIGKILL)
    wait_until(lambda: running.children[recovery.pk].poll() is not None, what="the server died")
    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.FAILED)

    running.reconcile()

    assert not recovery.directory.exists()
    with open("/proc/mounts") as mounts:
        assert str(recovery.export_path) not in mounts.read()


@pytest.mark.django_db
def test_leftovers_of_a_crash_are_removed_by_their_folder_name(
    instant_settings: Any, running: supervisor.Supervisor
) -> None:
    leftover = Path(instant_settings.INSTANT_DIR) / "4242"
    (leftover / "overlay" / "disks").mkdir(parents=True)
    (leftover / "mount").mkdir()
    (leftover / "overlay" / "disks" / "disk.overlay").write_bytes(b"x" * 4096)

    running.reconcile()

    assert not leftover.exists()


@pytest.mark.django_db(transaction=True)
def test_the_command_serves_and_stops_everything_on_sigterm(point: RecoveryPoint) -> None:
    recovery = recovery_of(point)
    db = django_settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ, "DATABASE_URL": url, "STORE_DIR": str(django_settings.BACKUP_STORE_DIR),
        "INSTANT_DIR": str(django_settings.INSTANT_DIR), "INSTANT_NFS_PORT": str(django_settings.INSTANT_NFS_PORT),
    }  # fmt: skip
    command = subprocess.Popen(
        [sys.executable, "manage.py", "instant-supervisor", "--every", "0.2"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def ready() -> bool:
            assert command.poll() is None, command.communicate()
            recovery.refresh_from_db()
            return supervisor.is_ready(recovery)

        wait_until(ready, what="the command serves and exports the point", timeout=60)
        pid = recovery.serve_pid
        assert nfs_answers() and os.path.ismount(recovery.export_path)
        command.send_signal(signal.SIGTERM)
        _out, err = command.communicate(timeout=60)
        assert command.returncode == 0, err.decode()
        assert not alive(pid) and not os.path.ismount(recovery.export_path) and not nfs_answers()
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()


@pytest.mark.django_db
def test_several_points_share_one_ganesha_and_one_ending_leaves_the_other_served(
    point: RecoveryPoint, images: dict[str, Path], running: supervisor.Supervisor
) -> None:
    expected = sha256(images["2000"].read_bytes())
    first, second = served(running, recovery_of(point)), served(running, recovery_of(point))
    assert running.ganesha is not None and set(running.ganesha.exports) == {first.export_id, second.export_id}
    assert sha256(flat_over_nfs(first)) == sha256(flat_over_nfs(second)) == expected

    InstantRecovery.objects.filter(pk=first.pk).update(state=InstantRecovery.State.FINISHED)
    running.reconcile()

    assert not first.directory.exists()
    assert sha256(flat_over_nfs(second)) == expected


@pytest.mark.django_db
def test_a_killed_ganesha_is_started_again_with_the_exports(
    point: RecoveryPoint, images: dict[str, Path], running: supervisor.Supervisor
) -> None:
    recovery = served(running, recovery_of(point))
    assert running.ganesha is not None and running.ganesha.process is not None
    killed = running.ganesha.process
    killed.kill()
    killed.wait()
    assert not nfs_answers()

    running.reconcile()

    assert running.ganesha is not None and running.ganesha.process is not killed and nfs_answers()
    assert sha256(flat_over_nfs(recovery)) == sha256(images["2000"].read_bytes())
    recovery.refresh_from_db()
    assert recovery.restarts == 1 and "nfs-ganesha" in recovery.restart_reason
    assert "nfs-ganesha" in open_alert(Alert.Kind.INSTANT_RESTARTED).detail


@pytest.mark.django_db
def test_a_supervisor_stopped_on_purpose_counts_no_restart(point: RecoveryPoint) -> None:
    first = supervisor.Supervisor()
    recovery = served(first, recovery_of(point))
    first.shutdown()  # make run stopped
    second = supervisor.Supervisor()
    try:
        recovery = served(second, recovery)
    finally:
        second.shutdown()
    assert recovery.restarts == 0


def open_alert(kind: str) -> Alert:
    evaluate()
    return Alert.objects.get(kind=kind, resolved_at__isnull=True)


@pytest.fixture
def small_instant_dir(instant_settings: Any) -> Iterator[Path]:
    """INSTANT_DIR on a 3 MiB tmpfs: the overlays' file system fills after a few writes."""
    directory = Path(instant_settings.INSTANT_DIR)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(directory)], check=True)
    yield directory
    subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.mark.django_db
def test_a_full_overlay_fails_the_vms_writes_cleanly_says_why_and_leaves_the_chunks_intact(
    point: RecoveryPoint, images: dict[str, Path], small_instant_dir: Path, running: supervisor.Supervisor
) -> None:
    store = Path(django_settings.BACKUP_STORE_DIR)
    before = store_state(store)
    recovery = served(running, recovery_of(point, InstantRecovery.State.RUNNING))
    (flat,) = recovery.export_path.glob("*-flat.vmdk")

    written, error = write_until_full(flat)

    assert error.errno == errno.ENOSPC and written

    def said() -> bool:
        running.reconcile()
        recovery.refresh_from_db()
        return bool(recovery.write_error)

    wait_until(said, what="the supervisor says the VM's writes fail")
    assert "full" in recovery.write_error or "No space left" in recovery.write_error
    assert recovery.overlay_free_bytes is not None and recovery.overlay_free_bytes < supervisor.FULL_BELOW
    alert = open_alert(Alert.Kind.INSTANT_OVERLAY_FULL)
    assert alert.severity == Alert.Severity.CRITICAL and "writes fail" in alert.title
    expected = bytearray(images["2000"].read_bytes())
    for offset, piece in written:
        expected[offset : offset + len(piece)] = piece
    assert sha256(flat_over_nfs(recovery)) == sha256(bytes(expected))  # still served, the failed write left no trace
    assert store_state(store) == before
    for chunk in (p for p in (store / "chunks").rglob("*") if p.is_file()):
        decode_chunk_file(chunk.read_bytes(), bytes.fromhex(chunk.name))  # ChunkCorrupt if not

    InstantRecovery.objects.filter(pk=recovery.pk).update(state=InstantRecovery.State.STOPPED)
    running.reconcile()
    evaluate()
    assert not Alert.objects.filter(kind=Alert.Kind.INSTANT_OVERLAY_FULL, resolved_at__isnull=True).exists()
