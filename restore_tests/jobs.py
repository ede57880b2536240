"""restore_tests.run: prove one point recoverable (queue verify, its own workers: a test mostly waits).

Checks, in order, each timed and recorded on the RestoreTest: `volumes` (every disk's volumes open
and list; restore_tests.checks), `canary` (the policy's file is in the point), `start` (an instant
recovery of the point, run inside this job: served, mounted as a datastore, registered with its NICs
disconnected or on the policy's isolated network, powered on; when the vCenter user may not mount a
datastore, as Azure VMware Solution's CloudAdmin may not, a full restore of the point to the policy's
datastore instead), `heartbeat` (VMware Tools running with a
green heartbeat within the policy's time), `ip` and `tcp` when the policy asks, then `cleanup`
(stopped and unregistered, the datastore unmounted, the supervisor's mount, export and overlay gone),
whatever happened before. A check that fails makes the test failed (the point is not proven); a test
that cannot run (vCenter unreachable, the simulator gone) ends as "could not run" and proves nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone

from instant import actions as instant_actions
from instant import jobs as instant_jobs
from instant.models import InstantRecovery
from instant.view.source import Unservable, open_point
from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import Datastore, Folder, Host, Network, ResourcePool
from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed
from recovery import browse
from recovery.jobs import restore_within
from restore_tests import checks, results
from restore_tests.actions import RUN_KIND, policy_of
from restore_tests.models import RestoreTest, RestoreTestPolicy
from restore_tests.reaper import TAG, TAG_CATEGORY
from vault.storage import tiered_store

State = RestoreTest.State
# What instant recovery needs beyond a full restore: without it, the test restores the point in full.
INSTANT_ONLY = {"Host.Config.Storage"}
CLEANUP_TIMEOUT = 120.0  # seconds the supervisor gets to remove the mount, export and overlay


class CheckFailed(Exception):
    """A check failed: the point is not proven recoverable. args: (check, sentence)."""


class CouldNotRun(Exception):
    """The test could not run; nothing is known about the point."""


@job_kind(RUN_KIND, title="Restore test", queue="verify")
def run(ctx: JobContext, test_id: int) -> dict[str, Any]:
    test = RestoreTest.objects.select_related("vm__vcenter", "point").get(pk=test_id)
    if test.point is None:
        _finish(test, State.ERROR, error="Its recovery point was deleted before the test ran.")
        raise JobFailed(test.error)
    RestoreTest.objects.filter(pk=test.pk).update(state=State.RUNNING, started=timezone.now())
    test.started = timezone.now()
    proof = Proof(ctx, test, policy_of(test.vm))
    try:
        proof.run()
    except CheckFailed as failed:
        check, sentence = failed.args
        _finish(test, State.FAILED, failed_check=check, error=sentence, steps=proof.steps)
        raise JobFailed(f"The restore test of {test.vm.name} failed at {check}: {sentence}") from None
    except (CouldNotRun, vsphere.VCenterError, JobFailed) as exc:
        _finish(test, State.ERROR, error=str(exc), steps=proof.steps)
        raise JobFailed(f"The restore test of {test.vm.name} could not run: {exc}") from None
    except BaseException as exc:
        _finish(test, State.ERROR, error=str(exc) or type(exc).__name__, steps=proof.steps)
        raise
    _finish(test, State.PASSED, steps=proof.steps, error=proof.cleanup_error)
    ctx.log(f"{test.vm.name}'s point of {test.point_created:%Y-%m-%d %H:%M} is proven recoverable.")
    return {"vm": test.vm.name, "state": State.PASSED, "steps": len(proof.steps)}


def _finish(test: RestoreTest, state: str, **fields: Any) -> None:
    fields = {"state": state, "finished": timezone.now(), **fields}
    for name, value in fields.items():
        setattr(test, name, value)
    with transaction.atomic():
        RestoreTest.objects.filter(pk=test.pk).update(**fields)
        results.record(test)


class Proof:
    """One test's checks; `steps` is what the RestoreTest records."""

    def __init__(self, ctx: JobContext, test: RestoreTest, policy: RestoreTestPolicy) -> None:
        self.ctx, self.test, self.policy = ctx, test, policy
        self.steps: list[dict[str, Any]] = []
        self.recovery: InstantRecovery | None = None  # the instant recovery, or
        self.restored_moref = ""  # the VM a full restore made
        self.vm_moref = ""  # the test VM, either way
        self.cleanup_error = ""

    @contextmanager
    def step(self, check: str) -> Iterator[dict[str, Any]]:
        """Time a check and record it; CheckFailed inside records it as failed and goes on up. A check
        that ends without an exception is ok unless it set entry["ok"] to False itself (cleanup does)."""
        entry: dict[str, Any] = {"check": check, "ok": None, "seconds": 0.0, "detail": ""}
        began = time.monotonic()
        self.steps.append(entry)
        try:
            yield entry
        except CheckFailed as failed:
            entry.update(ok=False, detail=failed.args[1])
            raise
        except Exception as exc:
            entry.update(ok=False, detail=f"could not run: {exc}")
            raise
        else:
            entry["ok"] = entry["ok"] is not False
        finally:
            entry["seconds"] = round(time.monotonic() - began, 2)
            RestoreTest.objects.filter(pk=self.test.pk).update(steps=self.steps)
            self.ctx.log(f"{check}: {'ok' if entry['ok'] else 'failed'} ({entry['seconds']} s) {entry['detail']}")

    def run(self) -> None:
        point = self.test.point
        assert point is not None
        views = browse.disk_views(point)  # opened once for both checks of the point itself
        with self.step("volumes") as entry:
            result = checks.check_volumes(views, self._previous_volumes())
            entry.update(detail=result.detail, volumes=result.volumes)
            if not result.ok:
                raise CheckFailed("volumes", result.detail)
        if self.policy.canary_path:
            with self.step("canary") as entry:
                result = checks.check_canary(views, self.policy.canary_path, self.policy.canary_min_bytes)
                entry["detail"] = result.detail
                if not result.ok:
                    raise CheckFailed("canary", result.detail)
        try:
            self._boot_and_watch()
        finally:
            self._clean_up()

    def _previous_volumes(self) -> list[dict[str, Any]] | None:
        """The volumes of the newest earlier finished test of this VM's points that got that far."""
        earlier = RestoreTest.objects.filter(vm=self.test.vm, finished__isnull=False).exclude(pk=self.test.pk)
        for test in earlier.order_by("-finished")[:5]:
            for step in test.steps:
                if step.get("check") == "volumes" and "volumes" in step:
                    return list(step["volumes"])
        return None

    def _boot_and_watch(self) -> None:
        point, policy, vm = self.test.point, self.policy, self.test.vm
        assert point is not None
        with self.step("start") as entry:
            try:
                open_point(tiered_store(), str(point.pk))
            except Unservable as exc:
                raise CheckFailed("start", str(exc)) from None
            name = _test_vm_name(policy.name_prefix, self.test)
            RestoreTest.objects.filter(pk=self.test.pk).update(test_vm_name=name)
            host = policy.host or instant_actions.default_host(vm)
            pool, folder = instant_actions.pool_and_folder(vm, host)
            with open_connection(vm.vcenter) as conn:
                missing = vsphere.missing_privileges(conn, host.moref, folder, pool).privileges
            if INSTANT_ONLY & set(missing):  # Azure VMware Solution's CloudAdmin, say: a full restore
                self.ctx.log(f"No instant recovery without {', '.join(sorted(INSTANT_ONLY & set(missing)))}: "
                             "the point is restored in full to a test VM instead.")  # fmt: skip
                entry["detail"] = self._restore_in_full(name, host, pool, folder)
            else:
                entry["detail"] = self._start_instantly(name, host)
            entry["detail"] += self._tag_test_vm()
        with open_connection(vm.vcenter) as conn:
            self._guest_checks(conn)

    def _start_instantly(self, name: str, host: Host) -> str:
        point = self.test.point
        assert point is not None
        self.recovery = instant_actions.start_instant_recovery(
            None, point, name=name, host=host, network=self.policy.network, run_in=self.ctx.run
        )
        RestoreTest.objects.filter(pk=self.test.pk).update(instant_recovery=self.recovery)
        instant_jobs.start(self.ctx, self.recovery.pk)
        self.recovery.refresh_from_db()
        self.vm_moref = self.recovery.vm_moref
        return f"{name} powered on from the point (instant recovery) on {self.recovery.host_name}"

    def _restore_in_full(self, name: str, host: Host, pool: str, folder: str) -> str:
        point, vm = self.test.point, self.test.vm
        assert point is not None
        datastore = (
            self.policy.datastore
            or Datastore.objects.filter(
                vcenter_id=vm.vcenter_id, moref=point.config.get("datastore_moref") or ""
            ).first()
        )
        if datastore is None:
            raise CouldNotRun("no datastore for a full restore: choose one in the group's restore test policy")
        network = Network.objects.filter(vcenter_id=vm.vcenter_id, name=self.policy.network).first()
        nics = {str(nic["key"]): network.pk if network and self.policy.network else None
                for nic in point.config.get("nics") or []}  # fmt: skip
        target = {
            "mode": "new", "name": name, "datastore_id": datastore.pk, "host_id": host.pk, "nics": nics,
            "folder_id": Folder.objects.get(vcenter_id=vm.vcenter_id, moref=folder).pk,
            "pool_id": ResourcePool.objects.get(vcenter_id=vm.vcenter_id, moref=pool).pk,
        }  # fmt: skip
        RestoreTest.objects.filter(pk=self.test.pk).update(method="restore")
        result = restore_within(self.ctx, point, target)
        self.vm_moref, self.restored_moref = result.moref, result.moref
        RestoreTest.objects.filter(pk=self.test.pk).update(bytes_read=result.bytes)
        with open_connection(vm.vcenter) as conn:
            vsphere.power_on(conn, result.moref)
        return f"{name} restored in full to {datastore.name} and powered on"

    def _tag_test_vm(self) -> str:
        """Tag the test VM TAG_CATEGORY/TAG; a failure is a warning, not a failed test (the name
        prefix marks the VM too, and cleanup removes it either way)."""
        try:
            with open_connection(self.test.vm.vcenter) as conn:
                vsphere.tag_vm(conn, self.vm_moref, TAG_CATEGORY, TAG)
        except vsphere.VCenterError as exc:
            self.ctx.log(f"The test VM was not tagged {TAG_CATEGORY}/{TAG}: {exc}", level="warning")
            return ""
        return f"; tagged {TAG_CATEGORY}/{TAG}"

    def _guest_checks(self, conn: vsphere.Connection) -> None:
        policy = self.policy
        wants_ip = policy.require_ip or bool(policy.tcp_port and policy.network)
        with self.step("heartbeat") as entry:
            report = vsphere.wait_for_guest(conn, self.vm_moref, timeout=policy.heartbeat_seconds, want_ip=wants_ip)
            if not report.tools_running or report.heartbeat != "green":
                raise CheckFailed(
                    "heartbeat",
                    f"VMware Tools did not report running with a green heartbeat within {policy.heartbeat_seconds} s "
                    f"(tools {'running' if report.tools_running else 'not running'}, heartbeat {report.heartbeat})",
                )
            entry["detail"] = f"tools running, heartbeat green after {report.waited:.0f} s"
        if wants_ip:
            with self.step("ip") as entry:
                if not report.ip:
                    raise CheckFailed("ip", f"the guest reported no IP address within {policy.heartbeat_seconds} s")
                entry["detail"] = f"the guest reported {report.ip}"
        if policy.tcp_port and policy.network:
            with self.step("tcp") as entry:
                _wait_for_port(report.ip, policy.tcp_port, policy.heartbeat_seconds)
                entry["detail"] = f"{report.ip}:{policy.tcp_port} answered"

    def _clean_up(self) -> None:
        recovery = self.recovery
        if recovery is None and not self.restored_moref:
            return
        with self.step("cleanup") as entry:
            try:
                if recovery is not None:
                    self._remove(recovery)
                else:
                    self._destroy_restored()
            except (vsphere.VCenterError, JobFailed, CouldNotRun) as exc:
                # Not the point's fault: the instant reaper retries the stop and removes what is left.
                self.cleanup_error = f"Not everything made for the test is removed yet ({exc}); it is retried."
                entry["detail"] = self.cleanup_error
                entry["ok"] = False
                return
            if recovery is None:
                entry["detail"] = "the restored test VM and its files removed; nothing left"
                return
            recovery.refresh_from_db()
            RestoreTest.objects.filter(pk=self.test.pk).update(bytes_read=recovery.bytes_read)
            entry["detail"] = "VM, datastore, export, mount and overlay removed; nothing left"

    def _destroy_restored(self) -> None:
        with open_connection(self.test.vm.vcenter) as conn:
            if _vm_exists(conn, self.restored_moref):
                vsphere.power_off(conn, self.restored_moref)
                vsphere.destroy_vm(conn, self.restored_moref)
            if _vm_exists(conn, self.restored_moref):
                raise CouldNotRun(f"the restored test VM {self.restored_moref} is still in vCenter")

    def _remove(self, recovery: InstantRecovery) -> None:
        recovery.refresh_from_db()
        if recovery.state == InstantRecovery.State.RUNNING:
            instant_actions.stop(None, recovery, run_in=self.ctx.run)
            instant_jobs.stop(self.ctx, recovery.pk)
        recovery.refresh_from_db()
        if not recovery.is_final:
            raise CouldNotRun(f"the instant recovery is {recovery.get_state_display()}")
        _wait_until_torn_down(recovery)
        with open_connection(self.test.vm.vcenter) as conn:
            if recovery.datastore_moref and vsphere.datastore_exists(conn, recovery.datastore_moref):
                raise CouldNotRun(f"datastore {recovery.datastore_name} is still in vCenter")
            if recovery.vm_moref and _vm_exists(conn, recovery.vm_moref):
                raise CouldNotRun(f"VM {recovery.vm_name} is still in vCenter")


def _test_vm_name(prefix: str, test: RestoreTest) -> str:
    name = f"{prefix}{test.vm.name}"[:70]
    return name if not instant_actions.name_in_use(name) else f"{name}-{test.pk}"


def _vm_exists(conn: vsphere.Connection, moref: str) -> bool:
    try:
        vsphere.power_state(conn, moref)
    except vsphere.NotFound:
        return False
    return True


def _wait_until_torn_down(recovery: InstantRecovery) -> None:
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    while True:
        recovery.refresh_from_db()
        if recovery.serve_pid is None and recovery.export_id is None and not recovery.directory.exists():
            return
        if time.monotonic() > deadline:
            raise CouldNotRun(f"the supervisor has not removed {recovery.directory} within {CLEANUP_TIMEOUT:.0f} s")
        time.sleep(0.2)


def _wait_for_port(ip: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((ip, port), timeout=5).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CheckFailed("tcp", f"nothing answered on {ip}:{port} within {timeout:.0f} s ({exc})") from None
        time.sleep(1)
