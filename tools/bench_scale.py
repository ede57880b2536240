"""`make bench-scale` (issue 18 item 3): several worker machines, for real.

Two (or more) worker machines (tools/machines.py: separate process trees with their own DATA_DIR,
MACHINE_NAME, RQ workers for the backup, vault and maintenance queues and their own RQ cron scheduler)
share one PostgreSQL, one Redis and one STORE_DIR, against one vCenter simulator whose VMs have small
disks holding real ext4 file systems (tools/chaos's lab: the same servers, images and checks). The
schedule's slots are ticked by every machine at the same millisecond (`python -m tools.machines
tick`), as two schedulers racing for a slot would. It measures and prints:

1. backups per VM per slot (every JobRun of the slot, and the succeeded ones), over five slots;
2. the largest number of VMs with a backup snapshot at once, sampled from the simulator every 50 ms
   through the product's pyVmomi door, against MAX_CONCURRENT_BACKUPS;
3. a garbage collection (the vault.gc job, run by whichever machine's vault worker takes it) while
   backups run on the other machine, on a store whose chunks were made two days old and whose
   first points were deleted (so it has garbage to sweep, and a backup that needs one of those
   chunks again races the sweep); then the verify job over every point, and every chunk every point
   names read back and hashed;
4. one machine SIGKILLed (its process group and work horses) mid-backup: how long until the survivors'
   reaper errors its running rows (through RQ's registry: the machines have different names) and the
   next slot backs its VMs up on a surviving machine; then no row left running, no snapshot left after
   the snapshot cleanup, no staging directory, every store point with its row and every row with its
   store point.

    python -m tools.bench_scale [--vms 40] [--machines 2] [--disk-mib 64] [--limit 3] [--json FILE]

The two-machine test (tests/scale/test_two_machines.py) runs the small form (10 VMs) and asserts each
figure from --json. With --reap-every N this process also runs the orphan reaper every N seconds (the
test: it does not wait for the survivors' cron minute); without it only the survivors' own scheduler
reaps, which is the figure the bench prints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.chaos.lab import register_vcenter  # noqa: E402
from tools.chaos.measure import (  # noqa: E402
    backup_snapshots_left,
    check_local,
    reap,
    retrying,
    wait_all_final,
    wait_final,
)
from tools.chaos.stack import Stack, VmSpec, wait_until  # noqa: E402
from tools.machines import Machine, shared_environment  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB  # the store's chunk size: a guest write of one whole chunk is one new chunk
FOLDER = "Scale"
ACTOR = "bench-scale"
SAMPLE_SECONDS = 0.05
SLOTS = 5  # 1-2 plain, 3 with the GC, 4 with the kill, 5 the survivors' next slot
GC_SLOT, KILL_SLOT = 3, 4
# MABS, the product this replaces, has no shared store to compare with (see print_table).
PEER = (
    "peer: none measured. Microsoft Azure Backup Server has no shared store and no scale-out of one "
    "protection group: each MABS server protects its own data sources into its own storage pool, and "
    "more capacity means another server with its own groups and storage."
)


def say(message: str) -> None:
    print(f"[bench-scale] {message}", flush=True)


@dataclass
class Result:
    machines: int
    vms: int
    limit: int
    disk_mib: int
    slots: list[dict[str, Any]] = field(default_factory=list)
    max_concurrent: int = 0
    max_slots_held: int = 0
    samples: int = 0
    first_slot_mb_per_s: float = 0.0
    gc: dict[str, Any] = field(default_factory=dict)
    kill: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def vm_specs(count: int, disk_mib: int) -> list[VmSpec]:
    if disk_mib < 32:
        raise SystemExit("--disk-mib must be at least 32: the last quarter holds the two chunks the guest writes")
    return [VmSpec(f"scale-{n:02}", FOLDER, disk_mib, noise_mib=max(1, disk_mib // 8)) for n in range(1, count + 1)]


class Sampler(threading.Thread):
    """Every 50 ms: how many VMs have a backup snapshot (vCenter, through inventory.vcenter) and how
    many backup slots are held (the BackupSlot rows)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.samples = 0
        self.max_snapshots = 0
        self.max_slots = 0
        self.error: str | None = None

    def run(self) -> None:
        from django.db import connection

        from inventory import vcenter as vsphere
        from inventory.connection import open_connection
        from inventory.models import VCenter
        from protection.models import BackupSlot

        try:
            with open_connection(VCenter.objects.get()) as conn:
                while not self.stopping.is_set():
                    began = time.monotonic()
                    vms = vsphere.fetch_inventory(conn, with_disks=False).vms
                    held = BackupSlot.objects.filter(job__isnull=False).count()
                    self.max_snapshots = max(self.max_snapshots, sum(1 for vm in vms if vm.snapshot_count))
                    self.max_slots = max(self.max_slots, held)
                    self.samples += 1
                    self.stopping.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began)))
        except Exception as exc:  # the figure says it stopped; the run goes on
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()


def machine_of(worker: str) -> str:
    return worker.rpartition(":")[0]


class Run:
    """One bench run: the stack, the machines and the figures."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.vms = vm_specs(args.vms, args.disk_mib)
        self.stack = Stack(work, random.Random(1), self.vms, vault_kind="directory")
        self.machines: list[Machine] = []
        self.result = Result(args.machines, args.vms, args.limit, args.disk_mib)
        self.slot_isos: dict[int, str] = {}
        self.base: datetime | None = None
        self.group: Any = None

    # Set-up ---------------------------------------------------------------------------------------

    def set_up(self) -> None:
        self.stack.start_servers()
        os.environ.update(
            STORE_DIR=str(self.work / "store"),
            MACHINE_NAME="bench-controller",  # this process is not a machine: it reaps only through RQ
            MAX_CONCURRENT_BACKUPS=str(self.args.limit),
            LOG_LEVEL="WARNING",
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        shared = shared_environment(
            store_dir=self.work / "store", secrets_dir=self.stack.data_dir, max_concurrent_backups=self.args.limit
        )
        self.machines = [Machine(f"machine-{chr(97 + n)}", self.work / f"machine-{chr(97 + n)}", shared)
                         for n in range(self.args.machines)]  # fmt: skip
        for machine in self.machines:
            machine.start()
        say(f"simulator with {len(self.vms)} VMs of {self.args.disk_mib} MiB (real ext4 file systems)")
        self.stack.start_simulator()
        for machine in self.machines:
            machine.wait_ready()
        say("machines ready: " + ", ".join(f"{m.name} ({len(m.processes)} processes)" for m in self.machines))
        register_vcenter(self.stack)
        self.group = self.protect()

    def protect(self) -> Any:
        from inventory.models import Folder
        from protection import actions
        from protection.models import Policy

        policy = actions.default_policy_values()
        policy.update(schedule="every 1h", replicate=False, parallelism=8, window_hours=None)
        group = actions.save_group(
            ACTOR,
            group=None,
            name=FOLDER,
            description="bench-scale",
            selection=actions.Selection(folder_ids=[Folder.objects.get(path=f"DC/{FOLDER}").pk]),
            policy_values=policy,
        )
        self.base = Policy.objects.get(group=group).last_slot
        # Restore tests (issue 17) would be queued on the `verify` queue, which these machines do not
        # serve: they are not what this bench measures.
        from restore_tests.models import RestoreTestPolicy

        RestoreTestPolicy.objects.create(group=group, enabled=False)
        members = group.members.count()
        if members != len(self.vms):
            raise RuntimeError(f"the group has {members} members, not {len(self.vms)}")
        return group

    # Guest writes ---------------------------------------------------------------------------------

    def write(self, chunk: int, version: str) -> None:
        """One whole chunk of every VM's disk (its last quarter: free space of the file system) set to
        bytes that depend only on the VM and `version`: writing a version again brings its chunk back."""
        assert self.stack.sim is not None
        for vm in self.vms:
            data = hashlib.shake_256(f"{vm.name}-{version}".encode()).digest(CHUNK)
            self.stack.sim.write_disk_range(vm.name, 0, chunk * CHUNK, data)

    @property
    def chunks(self) -> tuple[int, int]:
        first = (self.args.disk_mib * MiB * 3 // 4) // CHUNK
        return first, first + 1

    # Slots ----------------------------------------------------------------------------------------

    def tick(self, number: int, machines: list[Machine]) -> list[int]:
        """Every given machine ticks slot `number` at the same moment; how many backups each queued."""
        assert self.base is not None
        moment = (self.base + timedelta(hours=number, seconds=30)).isoformat()
        go = time.time() + 4.0  # each process needs a few seconds to load Django first
        processes = [m.tick(moment, go) for m in machines]
        queued = []
        for machine, process in zip(machines, processes, strict=True):
            out, err = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(f"{machine.name}'s tick failed: {err.decode()[-2000:]}")
            queued.append(int(out.decode().split()[-1]))
        from protection.models import Policy

        self.slot_isos[number] = Policy.objects.get(group=self.group).last_slot.isoformat()
        return queued

    def slot_runs(self, number: int) -> list[Any]:
        from jobs.models import JobRun
        from protection.scheduling import BACKUP_KIND

        return list(JobRun.objects.filter(kind=BACKUP_KIND, params__slot=self.slot_isos[number]))

    def run_slot(self, number: int, machines: list[Machine], during: Callable[[], None] | None = None) -> None:
        started = time.monotonic()
        queued = self.tick(number, machines)
        if during is not None:
            during()
        runs = self.slot_runs(number)
        tick = reap if self.args.reap_every else None
        rows = wait_final([r.pk for r in runs], self.args.slot_timeout, tick=tick)
        statuses = Counter(row.status for row in rows)
        say(f"slot {number}: queued {'+'.join(map(str, queued))} by {', '.join(m.name for m in machines)}; "
            f"{dict(statuses)} in {time.monotonic() - started:.1f} s")  # fmt: skip
        self.result.slots.append({"slot": number, "queued_by_machine": queued, "statuses": dict(statuses)})

    def first_slot_rate(self) -> float:
        from vault.models import RecoveryPoint

        runs = [r for r in self.slot_runs(1) if r.started and r.finished]
        read = sum(RecoveryPoint.objects.filter(job__in=[r.pk for r in runs]).values_list("read_bytes", flat=True))
        seconds = (max(r.finished for r in runs) - min(r.started for r in runs)).total_seconds()
        return read / MiB / seconds if seconds > 0 else 0.0

    # The garbage collection -----------------------------------------------------------------------

    def prepare_garbage(self) -> None:
        """Delete every VM's first point and make every chunk two days old (past the GC's grace): the
        first points' own chunks are garbage, and one of them per VM comes back in the next backup
        (the guest writes its old bytes again), racing the sweep."""
        from vault import actions
        from vault.models import RecoveryPoint

        for point in RecoveryPoint.objects.filter(job__in=[r.pk for r in self.slot_runs(1)]):
            actions.delete_point(ACTOR, point)
        old = time.time() - 2 * 24 * 3600  # past the default grace (VaultSettings.gc_grace_hours, 24)
        for directory, _dirs, files in os.walk(self.work / "store" / "chunks"):
            for name in files:
                os.utime(os.path.join(directory, name), (old, old))

    def start_gc_beside_backups(self, alive: list[Machine]) -> Any:
        """Once backups run on every machine, queue the GC (vault queue: a machine's vault worker)."""
        from jobs import runner
        from jobs.models import JobRun
        from protection.scheduling import BACKUP_KIND
        from vault.jobs import GC_KIND

        def backing_up_everywhere() -> bool:
            workers = JobRun.objects.filter(kind=BACKUP_KIND, status=JobRun.Status.RUNNING).values_list(
                "worker", flat=True
            )
            return {machine_of(w) for w in workers} >= {m.name for m in alive}

        try:
            wait_until(backing_up_everywhere, 60, "backups running on every machine", poll=0.01)
        except TimeoutError as exc:
            say(f"GC queued anyway: {exc}")
        return runner.enqueue(GC_KIND, params={"dry_run": False}, user=ACTOR)

    def gc_figures(self, gc_run: Any) -> dict[str, Any]:
        (gc,) = wait_final([gc_run.pk], 120)
        other = [
            r for r in self.slot_runs(GC_SLOT)
            if r.started and r.finished and machine_of(r.worker) != machine_of(gc.worker)
            and r.started < gc.finished and r.finished > gc.started
        ]  # fmt: skip
        local = (gc.result or {}).get("local", {})
        figures = {
            "status": gc.status,
            "error": gc.error,
            "machine": machine_of(gc.worker),
            "chunks_swept": local.get("chunks_swept", 0),
            "chunks_kept_young": local.get("chunks_kept_young", 0),
            "backups_on_other_machines_meanwhile": len(other),
        }
        from vault.jobs import enqueue_verify

        (verify,) = wait_final([enqueue_verify("local", user=ACTOR).pk], 300)
        figures.update(
            verify_status=verify.status,
            verify_error=verify.error,
            verified=(verify.result or {}).get("verified", 0),
            verify_machine=machine_of(verify.worker),
        )
        figures.update(self.store_figures())
        return figures

    def store_figures(self) -> dict[str, Any]:
        """Every point read back chunk by chunk (decoded and hashed, nothing moved aside), and the
        store's points against the rows."""
        from inventory.models import VirtualMachine
        from vault.models import RecoveryPoint
        from vault.storage import local_store

        local = check_local()
        rows = {str(pk) for pk in RecoveryPoint.objects.filter(local=True).values_list("pk", flat=True)}
        staging = sorted(os.listdir(self.work / "store" / "staging"))
        # A backup killed between publishing its point and writing its row leaves a whole point without
        # a row: the reconciler adopts it from its manifest once it is 15 minutes old (vault/reconcile.py).
        orphans = sorted(set(local.points) - rows)
        vm_ids = [local_store().open_point(pid).manifest.meta.get("vm_id") for pid in orphans]
        orphan_vms = VirtualMachine.objects.filter(pk__in=vm_ids).values_list("name", flat=True)
        return {
            "points": len(local.points),
            "chunks_missing_or_corrupt": len(local.bad_chunks),
            "points_unreadable": len(local.unreadable_points),
            "store_points_without_row": len(orphans),
            "store_points_without_row_whole": all(local.point_ok(pid) for pid in orphans),
            "store_points_without_row_vms": sorted(orphan_vms),
            "rows_without_store_point": len(rows - set(local.points)),
            "staging_left": len(staging),
        }

    # The kill -------------------------------------------------------------------------------------

    def kill_mid_backup(self, victim: Machine) -> None:
        """SIGKILL the victim once one of its backups holds a backup slot (it is inside backup_vm); every
        backup running there then dies with it (one may still be waiting for a slot)."""
        from jobs.models import JobRun
        from protection.models import BackupSlot
        from protection.scheduling import BACKUP_KIND

        running = JobRun.objects.filter(kind=BACKUP_KIND, status=JobRun.Status.RUNNING,
                                        worker__startswith=f"{victim.name}:")  # fmt: skip
        held = BackupSlot.objects.filter(job__isnull=False).values("job")
        wait_until(lambda: running.filter(pk__in=held).exists(), 60, f"a backup on {victim.name}", poll=0.005)
        victim.kill()
        self.killed_at = time.time()
        killed = list(running.all())
        # Whatever else the machine was running (a catalog job, a cron job) died with it too.
        others = JobRun.objects.filter(status=JobRun.Status.RUNNING, worker__startswith=f"{victim.name}:")
        others = others.exclude(kind=BACKUP_KIND)
        self.result.kill = {
            "machine": victim.name,
            "killed_vms": sorted(r.target_label for r in killed),
            "killed_runs": [str(r.pk) for r in killed],
            "killed_other_jobs": sorted(str(pk) for pk in others.values_list("pk", flat=True)),
        }
        say(f"{victim.name} killed with {len(killed)} backup(s) running: {', '.join(self.result.kill['killed_vms'])}")

    def wait_reaped(self) -> None:
        from jobs.models import JobRun

        ids = self.result.kill["killed_runs"]

        def reaped() -> bool:
            if self.args.reap_every:
                retrying(reap, "the reaper")
            return not JobRun.objects.filter(pk__in=ids, status=JobRun.Status.RUNNING).exists()

        wait_until(reaped, 600, "the killed machine's rows errored", poll=self.args.reap_every or 1.0)
        rows = list(JobRun.objects.filter(pk__in=ids))
        self.result.kill.update(
            reaped_after_s=round(max(r.finished.timestamp() for r in rows) - self.killed_at, 1) if rows else None,
            reaped_errors=sorted({r.error for r in rows}),
            reaped_statuses=sorted({r.status for r in rows}),
        )

    def kill_figures(self) -> None:
        from inventory.models import VirtualMachine
        from jobs.models import JobRun

        killed = set(self.result.kill["killed_vms"])
        ids = {str(pk) for pk in VirtualMachine.objects.filter(name__in=killed).values_list("pk", flat=True)}
        again = [r for r in self.slot_runs(KILL_SLOT + 1) if str(r.params["vm_id"]) in ids]
        done = [r for r in again if r.status == JobRun.Status.SUCCEEDED]
        self.result.kill.update(
            backed_up_next_slot=sorted(r.target_label for r in done),
            backed_up_by=sorted({machine_of(r.worker) for r in done}),
            backed_up_after_s=round(max(r.finished.timestamp() for r in done) - self.killed_at, 1) if done else None,
        )

    def end_figures(self) -> None:
        from jobs.models import JobRun
        from jobs.runner import enqueue

        # What the next inventory sync or worker start queues: the leftover snapshot cleanup.
        (cleanup,) = wait_final([enqueue("protection.cleanup_snapshots").pk], 120)
        snapshots, where = backup_snapshots_left()
        # The survivor is still at work (the last slot's catalog jobs, its cron's jobs): every row must
        # end, none of the dead machine's may stay running.
        left = wait_all_final(120)
        dead = f"{self.result.kill.get('machine')}:"
        unfinished = JobRun.objects.exclude(status__in=JobRun.FINAL)
        self.result.end = {
            "cleanup_status": cleanup.status,
            "snapshots_left": snapshots,
            "snapshots_where": where,
            "rows_not_final": left,
            "rows_not_final_kinds": sorted(unfinished.values_list("kind", flat=True)),
            "killed_machine_rows_not_final": unfinished.filter(worker__startswith=dead).count(),
            "jobs_not_succeeded": self.unsuccessful(),
            "errors": self.unexpected_errors,  # why they did not succeed, for the reader of a failed run
            **self.store_figures(),
        }

    unexpected_errors: list[str] = []

    def unsuccessful(self) -> dict[str, int]:
        """Jobs that did not succeed, by kind and status, apart from those the kill stopped."""
        from jobs.models import JobRun

        killed = set(self.result.kill.get("killed_runs", [])) | set(self.result.kill.get("killed_other_jobs", []))
        rows = JobRun.objects.exclude(status=JobRun.Status.SUCCEEDED).values_list("kind", "status", "pk", "error")
        unexpected = [(kind, status, error) for kind, status, pk, error in rows if str(pk) not in killed]
        self.unexpected_errors = sorted(
            {f"{kind} {status}: {(error or '')[-600:]}" for kind, status, error in unexpected}
        )
        return dict(Counter(f"{kind} {status}" for kind, status, _ in unexpected))

    # Counting -------------------------------------------------------------------------------------

    def count_slots(self) -> None:
        """Per slot: every VM's backup JobRuns (any status) and succeeded ones, min and max over the
        VMs (the killed VMs apart in the kill slot), and its recovery points (slot 1's were deleted)."""
        from inventory.models import VirtualMachine
        from jobs.models import JobRun
        from vault.models import RecoveryPoint

        vm_ids = [
            str(pk) for pk in VirtualMachine.objects.filter(protection_group=self.group).values_list("pk", flat=True)
        ]
        killed = set(self.result.kill.get("killed_vms", []))
        for entry in self.result.slots:
            runs = self.slot_runs(entry["slot"])
            names = {str(r.params["vm_id"]): r.target_label for r in runs}
            counted = [v for v in vm_ids if not (entry["slot"] == KILL_SLOT and names.get(v) in killed)]
            every = Counter(str(r.params["vm_id"]) for r in runs)
            good = Counter(str(r.params["vm_id"]) for r in runs if r.status == JobRun.Status.SUCCEEDED)
            points = Counter(str(vm) for vm in RecoveryPoint.objects.filter(job__in=[r.pk for r in runs])
                             .values_list("vm_id", flat=True))  # fmt: skip
            entry.update(
                vms_counted=len(counted),
                runs_min=min(every[v] for v in counted),
                runs_max=max(every[v] for v in counted),
                succeeded_min=min(good[v] for v in counted),
                succeeded_max=max(good[v] for v in counted),
                points_min=min(points[v] for v in counted),
                points_max=max(points[v] for v in counted),
                machines=sorted({machine_of(r.worker) for r in runs if r.worker}),
            )

    # The whole run --------------------------------------------------------------------------------

    def run(self) -> Result:
        began = time.monotonic()
        self.set_up()
        say(f"set up in {time.monotonic() - began:.0f} s")
        x, y = self.chunks
        sampler = Sampler()
        sampler.start()
        self.write(x, "v1")
        self.write(y, "a")
        self.run_slot(1, self.machines)
        self.result.first_slot_mb_per_s = round(self.first_slot_rate(), 1)
        self.write(x, "v2")
        self.write(y, "b")
        self.run_slot(2, self.machines)
        self.prepare_garbage()
        self.write(x, "v1")  # slot 1's bytes again: a chunk only the deleted points held
        self.write(y, "c")
        gc: list[Any] = []
        wait_all_final(180)  # the vault queue idle (slot 2's catalog jobs done): the GC starts when queued
        self.run_slot(GC_SLOT, self.machines, during=lambda: gc.append(self.start_gc_beside_backups(self.machines)))
        self.result.gc = self.gc_figures(gc[0])
        sampler.stopping.set()
        sampler.join()
        self.result.max_concurrent, self.result.max_slots_held = sampler.max_snapshots, sampler.max_slots
        self.result.samples = sampler.samples
        if sampler.error:
            say(f"the sampler stopped: {sampler.error}")
        victim, survivors = self.machines[0], self.machines[1:]
        self.write(x, "v4")
        self.write(y, "d")
        self.run_slot(KILL_SLOT, self.machines, during=lambda: self.kill_mid_backup(victim))
        self.wait_reaped()
        self.run_slot(KILL_SLOT + 1, survivors)
        self.kill_figures()
        self.end_figures()
        self.count_slots()
        self.result.seconds = round(time.monotonic() - began, 1)
        return self.result

    def stop(self) -> None:
        for machine in self.machines:
            if machine.alive:
                machine.stop()
        self.stack.stop()


def print_table(r: Result) -> None:
    def slot_cell(entry: dict[str, Any]) -> str:
        return f"{entry['succeeded_min']}/{entry['succeeded_max']}"

    gc, kill = r.gc, r.kill
    rows = [
        ("machines", f"{r.machines} (own process trees, DATA_DIRs, MACHINE_NAMEs; one PostgreSQL, Redis, STORE_DIR)"),
        ("VMs", f"{r.vms} ({r.disk_mib} MiB disks, ext4)"),
        ("slots", f"{len(r.slots)} (each ticked by every live machine at the same moment)"),
        ("backups per VM per slot (min/max)", "  ".join(f"#{e['slot']}: {slot_cell(e)}" for e in r.slots)
         + f"  (all runs, any status: {min(e['runs_min'] for e in r.slots)}-{max(e['runs_max'] for e in r.slots)})"),
        ("max concurrent sampled vs limit", f"{r.max_concurrent} VMs with a backup snapshot (slots held: "
         f"{r.max_slots_held}) vs MAX_CONCURRENT_BACKUPS={r.limit}, {r.samples} samples every 50 ms"),
        ("GC pass", f"{gc.get('status')} on {gc.get('machine')} beside {gc.get('backups_on_other_machines_meanwhile')}"
         f" backups on the other machine: {gc.get('chunks_swept')} chunks swept, {gc.get('chunks_kept_young')} kept; "
         f"verify {gc.get('verify_status')} ({gc.get('verified')} points), "
         f"{gc.get('chunks_missing_or_corrupt')} chunks missing or corrupt"),
        ("kill -> re-backed-up VMs", f"{kill.get('machine')} killed with {len(kill.get('killed_vms', []))} running: "
         f"rows errored after {kill.get('reaped_after_s')} s, {len(kill.get('backed_up_next_slot', []))} backed up "
         f"at the next slot by {', '.join(kill.get('backed_up_by', []))}, "
         f"{kill.get('backed_up_after_s')} s after the kill"),
        ("left afterwards", f"{r.end.get('rows_not_final')} rows not final, {r.end.get('snapshots_left')} snapshots, "
         f"{r.end.get('staging_left')} staging dirs, {r.end.get('store_points_without_row')} store points without a "
         f"row (whole, of {', '.join(r.end.get('store_points_without_row_vms', [])) or 'no VM'}: the reconciler adopts "
         f"them), {r.end.get('rows_without_store_point')} rows without a store point; jobs that did not succeed "
         f"(the killed apart): {r.end.get('jobs_not_succeeded') or 'none'}"),
        ("MB/s aggregate", f"{r.first_slot_mb_per_s} (slot 1: every disk read in full, both machines)"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
    print(PEER)
    print(f"bench-scale: {r.seconds:.0f} s")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=40)
    parser.add_argument("--machines", type=int, default=2)
    parser.add_argument("--disk-mib", type=int, default=64)
    parser.add_argument("--limit", type=int, default=3, help="MAX_CONCURRENT_BACKUPS (default 3)")
    parser.add_argument("--reap-every", type=float, default=0.0,
                        help="also reap from here every N s (default: only the machines' cron)")  # fmt: skip
    parser.add_argument("--slot-timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.machines < 2:
        raise SystemExit("--machines must be at least 2: one is killed, the others go on")
    work = Path(tempfile.mkdtemp(prefix="vmb-scale-"))
    run = Run(args, work)
    try:
        result = run.run()
    except BaseException:
        args.keep = True
        raise
    finally:
        run.stop()
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
