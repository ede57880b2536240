"""Restore tests end to end against the simulator, a real FUSE server, nfs-ganesha and RQ: a backed-up
VM is proven recoverable (volumes, instant recovery, heartbeat) and nothing is left; a flipped byte in
a file system's metadata fails the volume check naming the volume; a VM whose VMware Tools never start
fails the heartbeat check after the timeout; twenty runs leave no test VM, datastore, export or overlay."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.conf import settings

from alerts.evaluation import evaluate
from alerts.models import Alert
from audit.models import AuditEntry
from instant import actions as instant_actions
from instant import supervisor
from instant.models import InstantRecovery
from inventory import vcenter as vsphere
from inventory.actions import update_vcenter
from inventory.connection import ConnectionParams
from inventory.models import VCenter, VirtualMachine
from jobs.models import JobRun
from protection.models import ProtectionGroup
from recovery import filesystems as fs
from restore_tests import actions, scheduling
from restore_tests.models import RestoreTest
from restore_tests.reaper import TAG, TAG_CATEGORY
from tests.factories.instant import instant_dir
from tests.factories.protection import BACKUP_LAB_VMS, protect_simulator
from tests.factories.simulator import prod_spec
from tests.factories.vcenter_roles import CLOUDADMIN, CLOUDADMIN_PASSWORD, admin_privileges_except, grant_role
from tests.instant.test_instant_recovery_jobs import backed_up, connect, datastore_names, supervising, vm_names
from tests.waiting import wait_until
from tools import diskimages
from tools.simulator import Simulator
from vault.models import RecoveryPoint

__all__ = ["backed_up", "supervising"]  # fixtures of the instant tests, used here by name
pytestmark = pytest.mark.django_db(transaction=True)
TAGGED = (TAG_CATEGORY, TAG)  # the supervisor's thread sees committed rows only
# lnx-01 with a network adapter: a guest reports its IP address on one (disconnected, as in every test).
LAB_VMS = [{**vm, "nics": ["VM Network"]} if vm["name"] == "lnx-01" else vm for vm in BACKUP_LAB_VMS]
MUTE_VM = {
    "name": "mute-01",
    "disks_mb": [40],
    "instance_uuid": "50000000-0000-0000-0000-00000000a003",
    "extra_config": {"vcsim.guest.tools": "never"},  # its VMware Tools never start
}


class Lab(NamedTuple):
    sim: Simulator
    group: ProtectionGroup


def damaged_copy(image: Path, directory: Path) -> Path:
    """The NTFS disk with one byte of its root folder's MFT record flipped (its "FILE" signature)."""
    with open(image, "rb") as f:
        layout = fs.open_disk(f, image.stat().st_size)
        (volume,) = [v for v in layout.volumes if v.fs_type == "ntfs"]
        f.seek(volume.offset)
        boot = f.read(512)
    sector, per_cluster = struct.unpack_from("<HB", boot, 0x0B)
    mft = volume.offset + struct.unpack_from("<Q", boot, 0x30)[0] * sector * per_cluster
    copy = directory / "damaged-ntfs.img"
    shutil.copyfile(image, copy)
    with open(copy, "r+b") as f:
        f.seek(mft + 5 * 1024)  # record 5: the root folder
        assert f.read(4) == b"FILE"
        f.seek(mft + 5 * 1024)
        f.write(b"GILE")
    return copy


@pytest.fixture
def lab_factory(vcsim_factory: Any, settings: Any, tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    with instant_dir(settings):

        def start(*, damaged: bool = False) -> Lab:
            settings.BACKUP_STORE_DIR = tmp_path / "store"
            sim = vcsim_factory(prod_spec(*LAB_VMS, MUTE_VM), tls=True, extra_users={CLOUDADMIN: CLOUDADMIN_PASSWORD})
            ntfs = diskimages.build_ntfs_disk(diskimages.sample_windows_tree(), size_mib=48)
            ext4 = diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40)
            sim.upload_disk_image("win-01", 0, damaged_copy(ntfs, tmp_path) if damaged else ntfs)
            sim.upload_disk_image("win-01", 1, diskimages.build_ext4_disk({"d.txt": "d\n"}, size_mib=40))
            sim.upload_disk_image("lnx-01", 0, ext4)
            sim.upload_disk_image("mute-01", 0, ext4)
            _vc, group = protect_simulator(sim, parallelism=1)
            actions.save_policy(None, group, heartbeat_seconds=20)
            return Lab(sim, group)

        yield start


def proved(vm_name: str, run_worker: Callable[[], None], user: Any = None) -> RestoreTest:
    test = actions.start_test(user, VirtualMachine.objects.get(name=vm_name))
    run_worker()
    test.refresh_from_db()
    return test


def assert_nothing_left(lab: Lab, running: supervisor.Supervisor) -> None:
    def torn_down() -> bool:
        return not InstantRecovery.objects.filter(serve_pid__isnull=False).exists() and running.ganesha is None

    wait_until(torn_down, what="every mount, export and overlay removed")
    assert not [name for name in vm_names(lab.sim) if name.startswith("vmb-test-")]
    assert not [name for name in datastore_names(lab.sim) if name.startswith("vmb-instant-")]
    assert not [p for p in Path(settings.INSTANT_DIR).iterdir() if p.name.isdigit()]
    with open("/proc/mounts") as mounts:
        assert str(settings.INSTANT_DIR) not in mounts.read()


def test_a_backed_up_vm_is_proven_recoverable_and_nothing_is_left(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    lab = lab_factory()
    point = backed_up("win-01")

    test = proved("win-01", run_worker, admin)

    assert test.state == RestoreTest.State.PASSED, (test.failed_check, test.error, test.steps)
    assert [s["check"] for s in test.steps] == ["volumes", "start", "heartbeat", "cleanup"]
    assert all(s["ok"] for s in test.steps), test.steps
    assert "volume(s) open and list" in test.steps[0]["detail"]
    assert test.steps[1]["detail"].endswith("; tagged VM Backup/restore-test"), test.steps[1]
    assert test.test_vm_name == "vmb-test-win-01" and test.point_id == point.pk
    assert test.bytes_read >= 0 and test.duration is not None
    point.refresh_from_db()
    assert point.restore_test == "passed" and point.restore_tested_at == test.finished
    assert VirtualMachine.objects.get(name="win-01").proven_at == test.finished
    recovery = test.instant_recovery
    assert recovery is not None and recovery.state == InstantRecovery.State.STOPPED
    assert_nothing_left(lab, supervising)


def test_a_flipped_byte_in_file_system_metadata_fails_the_volume_check_naming_the_volume(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    lab = lab_factory(damaged=True)
    point = backed_up("win-01")

    test = proved("win-01", run_worker)

    assert test.state == RestoreTest.State.FAILED and test.failed_check == "volumes", test.steps
    assert test.error.startswith("Hard disk 1, volume 1 [Basic data] is damaged NTFS: "), test.error
    assert test.instant_recovery is None  # nothing was started
    point.refresh_from_db()
    assert point.restore_test == "failed" and point.restore_test_note.startswith("volumes: ")
    assert VirtualMachine.objects.get(name="win-01").proven_at is None
    assert_nothing_left(lab, supervising)


def test_a_vm_whose_tools_never_start_fails_the_heartbeat_check_after_the_timeout(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    lab = lab_factory()
    actions.save_policy(None, lab.group, heartbeat_seconds=3)
    backed_up("mute-01")

    test = proved("mute-01", run_worker)

    assert test.state == RestoreTest.State.FAILED and test.failed_check == "heartbeat", test.steps
    assert "within 3 s" in test.error
    heartbeat = next(s for s in test.steps if s["check"] == "heartbeat")
    assert heartbeat["seconds"] >= 3
    assert test.steps[-1]["check"] == "cleanup" and test.steps[-1]["ok"], test.steps
    assert_nothing_left(lab, supervising)


def test_twenty_runs_leave_no_test_vm_datastore_export_or_overlay(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    lab = lab_factory()
    backed_up("lnx-01")
    for _ in range(20):
        test = proved("lnx-01", run_worker)
        assert test.state == RestoreTest.State.PASSED, (test.failed_check, test.error)
    assert RestoreTest.objects.filter(state=RestoreTest.State.PASSED).count() == 20
    assert_nothing_left(lab, supervising)


def test_without_host_storage_rights_the_point_is_restored_in_full_tested_and_removed_again(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    lab = lab_factory()
    backed_up("lnx-01")
    grant_role(lab.sim, CLOUDADMIN, "CloudAdmin", admin_privileges_except(lab.sim, "Host.Config.Storage"))
    vc = VCenter.objects.get()
    update_vcenter(admin, vc, replace(ConnectionParams.of(vc), username=CLOUDADMIN, password=CLOUDADMIN_PASSWORD))

    test = proved("lnx-01", run_worker)

    assert test.state == RestoreTest.State.PASSED, (test.failed_check, test.error, test.steps)
    assert test.method == "restore" and test.instant_recovery is None
    start = next(s for s in test.steps if s["check"] == "start")
    assert "restored in full" in start["detail"] and "tagged VM Backup/restore-test" in start["detail"]
    assert test.bytes_read > 0
    assert test.steps[-1]["check"] == "cleanup" and test.steps[-1]["ok"], test.steps
    assert_nothing_left(lab, supervising)


def test_a_group_s_policy_gets_every_vm_tested_in_its_window_and_a_failure_alerts_until_a_pass(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    lab = lab_factory()
    for name in ("win-01", "lnx-01", "mute-01"):
        backed_up(name)
    actions.save_policy(None, lab.group, max_concurrent=2, heartbeat_seconds=3)

    for _ in range(5):  # the cron's 5-minute ticks, each followed by the verify workers
        if not scheduling.tick():
            break
        run_worker()

    results = dict(RestoreTest.objects.values_list("vm__name", "state"))
    assert results == {"win-01": "passed", "lnx-01": "passed", "mute-01": "failed"}
    evaluate()
    alert = Alert.objects.get(kind=Alert.Kind.RESTORE_TEST_FAILED, resolved_at__isnull=True)
    assert "mute-01" in alert.title
    assert_nothing_left(lab, supervising)


def test_a_test_whose_worker_died_is_ended_and_what_it_made_is_removed(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor, admin: Any
) -> None:
    lab = lab_factory()
    point = backed_up("lnx-01")
    # As if a test's worker had been killed with its test VM running: the test and its instant
    # recovery still say running, the job was reaped (errored); and a full restore's test, its job
    # reaped too, left its tagged test VM in vCenter (here mute-01 plays it).
    recovery = started_instantly(point, run_worker, admin)
    job = JobRun.objects.create(kind=actions.RUN_KIND, status=JobRun.Status.ERRORED)
    test = RestoreTest.objects.create(
        vm=point.vm, point=point, state=RestoreTest.State.RUNNING, instant_recovery=recovery, job=job,
        test_vm_name=recovery.vm_name,
    )  # fmt: skip
    full = RestoreTest.objects.create(
        vm=point.vm, point=point, state=RestoreTest.State.RUNNING, method="restore", job=job, test_vm_name="mute-01"
    )
    with connect(lab.sim) as conn:
        vsphere.tag_vm(conn, VirtualMachine.objects.get(name="mute-01").moref, *TAGGED)

    scheduling.tick()
    run_worker()  # the stop the tick queued

    test.refresh_from_db()
    assert test.state == RestoreTest.State.ERROR and "worker was killed" in test.error
    assert "mute-01" not in vm_names(lab.sim) and "win-01" in vm_names(lab.sim)
    reaped = AuditEntry.objects.filter(action="restore_test.reap")
    assert sorted(str(e.details.get("vm") or e.details.get("restore_test")) for e in reaped) == sorted(
        ["mute-01", str(test.pk), str(full.pk)]
    )
    assert_nothing_left(lab, supervising)


def started_instantly(point: RecoveryPoint, run_worker: Callable[[], None], user: Any) -> InstantRecovery:
    recovery = instant_actions.start_instant_recovery(user, point, name="vmb-test-lnx-01")
    run_worker()
    recovery.refresh_from_db()
    assert recovery.state == InstantRecovery.State.RUNNING, recovery.error
    return recovery


def test_the_canary_file_and_the_guest_s_ip_are_checked_when_the_policy_asks(
    lab_factory: Callable[..., Lab], backed_up: Any, run_worker: Any, supervising: supervisor.Supervisor
) -> None:
    lab = lab_factory()
    backed_up("lnx-01")
    actions.save_policy(None, lab.group, canary_path="/var/log/syslog", canary_min_bytes=1024, require_ip=True)

    test = proved("lnx-01", run_worker)

    assert test.state == RestoreTest.State.PASSED, (test.failed_check, test.error, test.steps)
    assert [s["check"] for s in test.steps] == ["volumes", "canary", "start", "heartbeat", "ip", "cleanup"]
    steps = {s["check"]: s["detail"] for s in test.steps}
    assert steps["canary"].startswith("/var/log/syslog on Hard disk 1, volume ") and "bytes" in steps["canary"]
    assert steps["ip"].startswith("the guest reported 10.")

    actions.save_policy(None, lab.group, canary_path="/var/lib/db/main.db")
    test = proved("lnx-01", run_worker)

    assert test.state == RestoreTest.State.FAILED and test.failed_check == "canary"
    assert test.error == "/var/lib/db/main.db is on no volume of the point"
    assert test.instant_recovery is None  # failed before anything was started
    assert_nothing_left(lab, supervising)
