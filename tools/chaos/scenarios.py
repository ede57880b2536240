"""The faults, one function each. Every scenario gets the `Lab` and its `Figures`, repeats its fault
`figures.runs` times, and ends with `finish` (settle, then count), so every one is measured alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.chaos.lab import (
    CHAOS_ACTOR,
    Lab,
    backup,
    finish,
    kill_mid_job,
    pause,
    quiet,
    sync_inventory,
    typical_seconds,
    until_landed,
    wait_running,
)
from tools.chaos.measure import Figures, check_local, local_chunk_ok, reap, settle, wait_final
from tools.chaos.stack import ROOT, MiB

GiB = 1024 * MiB

# Scenarios --------------------------------------------------------------------------------------


def worker_killed_mid_backup(lab: Lab, figures: Figures) -> None:
    before = lab.measurer.baseline()
    window = typical_seconds("protection.backup", 2.0, targets=[vm.name for vm in lab.vms("Prod")])

    def kill() -> bool:
        vm = lab.rng.choice(lab.vms("Prod"))
        run = backup(lab, vm, write_chunks=lab.rng.choice([0, 1, 2]))
        return kill_mid_job(lab, run.pk, window)

    until_landed(figures, kill)
    finish(lab, figures, before)


def worker_killed_mid_replication(lab: Lab, figures: Figures) -> None:
    from jobs.models import JobRun
    from vault import actions
    from vault.models import RecoveryPoint

    before = lab.measurer.baseline()

    def kill() -> bool:
        vm = lab.rng.choice(lab.vms("Prod"))
        lab.stack.guest_write(vm.name, 5, mib_each=4)  # 20 MiB that replication has to carry
        run = backup(lab, vm)
        (row,) = wait_final([run.pk], 120, tick=reap)
        if row.status != JobRun.Status.SUCCEEDED:
            figures.notes.append(f"the backup before a replication ended {row.status}: {row.error[:80]}")
            return False
        point = RecoveryPoint.objects.get(job=row.pk)
        replication = JobRun.objects.filter(
            kind=actions.REPLICATE_KIND, params__point_ids__contains=[str(point.pk)]
        ).first() or actions.enqueue_replication(point)
        return kill_mid_job(lab, replication.pk, typical_seconds(actions.REPLICATE_KIND, 2.0) * 1.1)

    until_landed(figures, kill)
    finish(lab, figures, before)


def worker_killed_mid_gc(lab: Lab, figures: Figures) -> None:
    from jobs.runner import enqueue
    from vault.jobs import GC_KIND

    before = lab.measurer.baseline()
    (calibration,) = wait_final([enqueue(GC_KIND, params={"dry_run": False}).pk], 120, tick=reap)

    def kill() -> bool:
        make_garbage(lab, figures)
        run = enqueue(GC_KIND, params={"dry_run": False})
        return kill_mid_job(lab, run.pk, typical_seconds(GC_KIND, 1.0) * 1.1)

    until_landed(figures, kill)
    finish(lab, figures, before)


def make_garbage(lab: Lab, figures: Figures) -> None:
    """Delete the oldest point of the VM with the most points (the product's delete, both tiers), then
    date every chunk two days back: its chunks become garbage past any GC grace."""
    from django.db.models import Count

    from inventory.models import VirtualMachine
    from vault import actions
    from vault.models import RecoveryPoint

    busiest = (
        VirtualMachine.objects.filter(recovery_points__local=True)
        .annotate(n=Count("recovery_points"))
        .order_by("-n")
        .first()
    )
    if busiest is None or busiest.n < 3:
        vm = lab.rng.choice(lab.vms("Prod"))
        wait_final([backup(lab, vm, write_chunks=2).pk], 120, tick=reap)
        busiest = VirtualMachine.objects.get(name=vm.name)
    oldest = RecoveryPoint.objects.filter(vm=busiest, local=True).order_by("created").first()
    if oldest is not None:
        actions.delete_point(CHAOS_ACTOR, oldest)
        lab.removed_on_purpose.add(str(oldest.pk))
    age_chunks(lab, 48 * 3600)


def age_chunks(lab: Lab, seconds: float) -> None:
    from vault.storage import local_store

    then = time.time() - seconds
    roots = [local_store().chunks_dir]
    if lab.stack.vault_kind == "directory":
        roots.append(lab.stack.work / "vault" / "chunks")
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                os.utime(path, (then, then))


def redis_killed_mid_backup(lab: Lab, figures: Figures) -> None:
    _mid_backup(lab, figures, lambda: (lab.stack.kill_redis(), pause(lab.rng.uniform(0.2, 1.5)),
                                       lab.stack.start_redis_again()))  # fmt: skip


def postgres_restarted_mid_backup(lab: Lab, figures: Figures) -> None:
    from django.db import connections

    def restart() -> None:
        lab.stack.restart_postgres_immediately()
        connections.close_all()

    _mid_backup(lab, figures, restart)  # the workers live through it and must carry on as they are


def simulator_killed_mid_read(lab: Lab, figures: Figures) -> None:
    def crash() -> None:
        # Only what the probe backups and later runs read is filled again (uploads are slow).
        lab.stack.kill_and_restart_simulator({"Prod", "Big"})
        sync_inventory()  # the VMs have new morefs; the product finds them by instance UUID

    _mid_backup(lab, figures, crash)


def _mid_backup(lab: Lab, figures: Figures, fault: Callable[[], Any]) -> None:
    """A backup of the big VM reading its disk, then the fault at a random moment of the read."""
    from jobs.models import JobRun

    before = lab.measurer.baseline()
    # Snapshot and descriptor take the first few tenths of a second; the read is the rest.
    window = typical_seconds("protection.backup", 2.0, targets=["big-1"]) * 0.9

    def fault_mid_read() -> bool:
        (vm,) = lab.vms("Big")
        run = backup(lab, vm, write_chunks=1)
        wait_running(run.pk, timeout=30)
        pause(lab.rng.uniform(0.2, max(0.3, window)))
        landed = JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).exists()
        fault()
        lab.stack.ensure_workers()
        quiet(60)  # bounded: what does not end is counted after the scenario's settle
        return landed

    until_landed(figures, fault_mid_read, what="faults that landed while the backup read")
    finish(lab, figures, before)


def store_quota_reached_mid_backup(lab: Lab, figures: Figures) -> None:
    """Workers restarted with a store quota that a backup's new chunks overrun half-way (the rest of
    the quota is taken by a sparse file, as if other data filled the disk)."""
    from vault.storage import local_store

    before = lab.measurer.baseline()
    filler = local_store().root / "chaos-filler"
    for _ in range(figures.runs):
        (vm,) = lab.vms("Big")
        lab.stack.guest_write(vm.name, 6)  # about 6 MiB of new chunks, compressed
        used = local_store().used_bytes()
        quota_gb = used // GiB + 1
        with open(filler, "wb") as fh:
            fh.truncate(max(0, quota_gb * GiB - used - 3 * MiB))
        restart_workers(lab, {"STORE_QUOTA_GB": str(quota_gb)})
        try:
            (row,) = wait_final([backup(lab, vm).pk], 120, tick=reap)
            figures.notes.append(f"backup under quota: {row.status} ({row.error[:70]})")
        finally:
            filler.unlink(missing_ok=True)
            restart_workers(lab, {})
        quiet()
    finish(lab, figures, before)


def restart_workers(lab: Lab, env: dict[str, str]) -> None:
    lab.stack.stop_workers()
    lab.stack.worker_env = env
    lab.stack.start_workers()


def whole_stack_killed_with_backups_queued(lab: Lab, figures: Figures) -> None:
    """`make run` loses power with 20 backups queued: every worker, work horse and Redis SIGKILLed,
    then Redis (append-only file) and the workers started again. All 20 must end."""
    from protection import actions

    before = lab.measurer.baseline()
    for _ in range(figures.runs):
        runs = actions.backup_now(None, group=lab.groups["Fleet"])
        pause(lab.rng.uniform(0.3, 3.0))
        lab.stack.kill_everything()
        lab.stack.start_redis_again()
        lab.stack.start_workers()
        rows = wait_final([r.pk for r in runs], 240, tick=reap)
        final = [r for r in rows if r.status in ("succeeded", "failed", "errored", "cancelled")]
        ok = [r for r in rows if r.status == "succeeded"]
        figures.notes.append(f"{len(runs)} queued: {len(final)} final within 4 min, {len(ok)} succeeded")
        quiet()
    finish(lab, figures, before)


def first_job_of_a_chain_cancelled(lab: Lab, figures: Figures) -> None:
    """A group with parallelism 1: its backups wait on each other. The first is cancelled while
    queued (workers stopped, so it cannot start first); the others must still run."""
    from jobs.actions import cancel_job
    from jobs.models import JobRun
    from protection import actions

    before = lab.measurer.baseline()
    for _ in range(figures.runs):
        lab.stack.stop_workers()
        runs = actions.backup_now(None, group=lab.groups["Chain"])
        cancel_job(str(runs[0].pk), None)
        lab.stack.start_workers()
        rest = wait_final([r.pk for r in runs[1:]], 120, tick=reap)
        never_ran = [r for r in rest if r.status in JobRun.FINAL and r.started is None]
        figures.jobs_stuck += len(never_ran)  # made final without running: the chain stopped anyway
        figures.notes.append(
            f"after the cancel: {', '.join(f'{r.target_label} {r.status}' for r in rest)}"
            + (f"; {len(never_ran)} ended without running (counted as stuck)" if never_ran else "")
        )
        quiet()
    finish(lab, figures, before, replicate=False)


def chunks_corrupted(lab: Lab, figures: Figures) -> None:
    """Flip one byte in random local chunk files that the vault also holds; `vault.verify` must find
    every one, and `vault repair` (the vault's copy) or the next backup must repair every one."""
    from jobs.models import JobRun
    from jobs.runner import enqueue
    from protection import actions
    from vault.jobs import VERIFY_KIND
    from vault.storage import local_store, vault_if_configured

    figures.notes += settle(lab.stack)  # everything replicated first: the vault holds a good copy
    before = lab.measurer.baseline()
    store = local_store()
    vault = vault_if_configured()
    in_vault = set(vault.chunk_blobs()) if vault else set()
    referenced = sorted({d for needed in check_local().points.values() for d in needed})
    candidates = [d for d in referenced if vault is None or vault.chunk_name(d) in in_vault]
    victims = lab.rng.sample(candidates, min(3 if lab.quick else 10, len(candidates)))
    for digest in victims:
        flip_a_byte(lab, store.chunk_path(digest))
    figures.injected = len(victims)

    verify_all(enqueue, VERIFY_KIND)
    figures.detected = len(found_by_verify(victims))
    repair = subprocess.run(
        [sys.executable, "manage.py", "vault", "repair", "--wait"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=os.environ.copy(),
    )  # fmt: skip
    last = (repair.stdout.strip().splitlines() or repair.stderr.strip().splitlines() or [""])[-1]
    figures.notes.append(f"`manage.py vault repair --wait` exited {repair.returncode}: {last[:120]}")
    runs = actions.backup_now(None, group=lab.groups["Prod"])  # the next backup writes them again
    for row in wait_final([r.pk for r in runs], 240, tick=reap):
        if row.status != JobRun.Status.SUCCEEDED:
            figures.notes.append(f"next backup of {row.target_label}: {row.status} ({row.error[:70]})")
    verify_all(enqueue, VERIFY_KIND)
    still_damaged = found_by_verify(victims, damaged_only=True)
    figures.repaired = sum(1 for d in victims if local_chunk_ok(store, d, 4 * MiB) and d not in still_damaged)
    figures.runs = 1
    finish(lab, figures, before)


def flip_a_byte(lab: Lab, path: Any) -> None:
    size = path.stat().st_size
    offset = lab.rng.randrange(1, size)  # past the header byte: the payload, where damage hides
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0xFF]))


def verify_all(enqueue: Callable[..., Any], kind: str) -> None:
    from vault.models import RecoveryPoint

    ids = [str(pk) for pk in RecoveryPoint.objects.filter(local=True).values_list("pk", flat=True)]
    wait_final([enqueue(kind, params={"point_ids": ids, "tier": "local"}).pk], 300, tick=reap)


def found_by_verify(victims: list[bytes], *, damaged_only: bool = False) -> set[bytes]:
    """Victims that a point's recorded damage names (its messages or its list of damaged chunks)."""
    from vault.models import RecoveryPoint

    points = RecoveryPoint.objects.filter(damaged=True) if damaged_only else RecoveryPoint.objects.all()
    text = " ".join(
        " ".join(str(line) for line in (p.damage or [])) + " " + " ".join(str(c) for c in (p.damaged_chunks or []))
        for p in points
    )
    return {d for d in victims if d.hex() in text}


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Lab, Figures], None]
    runs: int
    quick_runs: int
    needs: frozenset[str] = frozenset()  # extra VM folders: "Big", "Chain", "Fleet"


BIG = frozenset({"Big"})
SCENARIOS = [
    Scenario("backup-kill", worker_killed_mid_backup, 20, 2),
    Scenario("replication-kill", worker_killed_mid_replication, 10, 1),
    Scenario("gc-kill", worker_killed_mid_gc, 10, 1),
    Scenario("redis-restart", redis_killed_mid_backup, 3, 1, BIG),
    Scenario("postgres-restart", postgres_restarted_mid_backup, 3, 1, BIG),
    Scenario("store-quota", store_quota_reached_mid_backup, 2, 1, BIG),
    Scenario("stack-restart", whole_stack_killed_with_backups_queued, 2, 1, frozenset({"Fleet"})),
    Scenario("chain-cancel", first_job_of_a_chain_cancelled, 2, 1, frozenset({"Chain"})),
    Scenario("chunk-corruption", chunks_corrupted, 1, 1),
    # Last: the simulator comes back with only the Prod and Big disks filled again.
    Scenario("simulator-kill", simulator_killed_mid_read, 2, 1, BIG),
]
