"""Letting the product recover as it would on its own, then counting what a fault cost.

`settle()` does what a worker start and cron do after a crash (the orphan reaper, the snapshot
cleanup, catch-up replication), waits for every job to end, and then fast-forwards the clock by
the reaper's two minutes for whatever is still not final. `Measurer` then counts, with the product's
own checks and without side effects (a chunk is decoded and hashed exactly as the store reads it, but
nothing is moved aside by the measuring): points lost, chunks lost, jobs stuck, snapshots left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tools.chaos.stack import Stack, say

T = TypeVar("T")
SETTLE_SECONDS = 120.0  # the "within two minutes"
# The reaper's grace for rows it cannot prove dead (jobs.maintenance.GRACE), plus a margin.
FAST_FORWARD = dt.timedelta(minutes=3)


@dataclass
class Figures:
    """One line of the table."""

    scenario: str
    runs: int = 0
    points_lost: int = 0
    chunks_lost: int = 0
    jobs_stuck: int = 0
    snapshots_left: int = 0
    injected: int | None = None  # chunk files damaged on purpose; None where the scenario damages none
    detected: int = 0
    repaired: int = 0
    probe_failures: int = 0  # backups that failed after recovery (not a column: a note, and exit 1)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def clean(self) -> bool:
        whole = self.injected is None or (self.detected == self.injected and self.repaired == self.injected)
        losses = self.points_lost + self.chunks_lost + self.jobs_stuck + self.snapshots_left
        return self.error is None and losses == 0 and whole and self.probe_failures == 0


def retrying(action: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Run action, retrying while a server just restarted is not answering yet."""
    from django.db import connections

    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as exc:  # a database or Redis connection error, whatever its class
            if time.monotonic() > deadline:
                raise
            say(f"{what}: {type(exc).__name__}: {str(exc)[:120]}; retrying")
            connections.close_all()
            time.sleep(1)


def unfinished() -> list[Any]:
    from jobs.models import JobRun

    return list(JobRun.objects.exclude(status__in=JobRun.FINAL))


def wait_final(run_ids: Iterable[Any], timeout: float, *, tick: Callable[[], None] | None = None) -> list[Any]:
    """Wait until these JobRun rows are final (tick() every few seconds: the reaper, as cron calls
    it every minute); returns the rows, final or not."""
    from jobs.models import JobRun

    ids = [str(pk) for pk in run_ids]
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + 5
    while True:
        rows = retrying(lambda: list(JobRun.objects.filter(pk__in=ids)), "reading jobs")
        if all(row.status in JobRun.FINAL for row in rows) or time.monotonic() > deadline:
            return rows
        if tick is not None and time.monotonic() > next_tick:
            tick()
            next_tick = time.monotonic() + 5
        time.sleep(0.1)


def wait_all_final(timeout: float) -> int:
    """Wait until no JobRun row is unfinished, reaping as cron would; how many are left."""
    from jobs.models import JobRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [row.pk for row in retrying(unfinished, "reading jobs")]
        if not pending:
            return 0
        wait_final(pending, max(0.0, deadline - time.monotonic()), tick=reap)
    return retrying(lambda: JobRun.objects.exclude(status__in=JobRun.FINAL).count(), "counting jobs")


def reap() -> None:
    from jobs.maintenance import reap_orphaned_runs

    retrying(reap_orphaned_runs, "the reaper")


def settle(stack: Stack, *, replicate: bool = True, budget: float = SETTLE_SECONDS) -> list[str]:
    """Let the product heal as it would by itself: dead workers replaced, the reaper, the start-up
    jobs, catch-up replication; then up to `budget` seconds for every job to end, and past that the
    reaper once more with its grace elapsed. Returns notes on what had to be done."""
    notes = []
    replaced = stack.ensure_workers()
    if replaced:
        notes.append(f"{replaced} dead worker(s) started again")
    reap()  # every minute from cron, and at each worker start
    queue_startup_jobs()  # what every worker start queues: snapshot cleanup, store reconciliation
    if replicate:
        from vault.jobs import enqueue_lagging_replications

        queued = retrying(enqueue_lagging_replications, "catch-up replication")  # cron, every 10 minutes
        if queued:
            notes.append(f"catch-up replication queued {queued} point(s)")
    left = wait_all_final(budget)
    if left:
        notes.append(f"{left} job(s) not final after {budget:.0f} s: reaper run with its grace elapsed")
        fast_forward_unfinished()
        reap()
        wait_all_final(30)
    return notes


def queue_startup_jobs() -> None:
    try:
        from jobs.worker import queue_startup_jobs as queue
    except ImportError:  # before jobs.worker had its list: the snapshot cleanup alone
        from jobs.runner import enqueue

        retrying(lambda: enqueue("protection.cleanup_snapshots"), "queueing the snapshot cleanup")
        return
    retrying(lambda: queue(logging.getLogger("chaos")), "queueing the start-up jobs")


def fast_forward_unfinished() -> None:
    """As if the reaper's grace had passed for every unfinished row (they are made older)."""
    from django.db.models import F

    from jobs.models import JobRun

    rows = JobRun.objects.exclude(status__in=JobRun.FINAL)
    retrying(lambda: rows.update(created=F("created") - FAST_FORWARD), "ageing rows")
    retrying(lambda: rows.filter(started__isnull=False).update(started=F("started") - FAST_FORWARD), "ageing rows")


# Chunks -----------------------------------------------------------------------------------------


def _wanted(indexes: Iterable[Any]) -> dict[bytes, int]:
    """digest -> length of every stored chunk these DiskIndexes reference."""
    wanted: dict[bytes, int] = {}
    for index in indexes:
        for i in range(len(index)):
            digest = index.digest(i)
            if digest is not None:
                wanted.setdefault(digest, index.extent(i)[1])
    return wanted


def _points_and_chunks(
    tier: Any, unreadable_errors: tuple[type[Exception], ...]
) -> tuple[dict[str, set[bytes]], dict[bytes, int], set[str]]:
    """Each point of a tier (local store or vault) with the chunks it needs, every chunk wanted with its
    length, and the points whose indexes cannot be read at all."""
    points: dict[str, set[bytes]] = {}
    wanted: dict[bytes, int] = {}
    unreadable: set[str] = set()
    for point_id in tier.list_points():
        try:
            point = tier.open_point(point_id)
            needed = _wanted([point.index(key) for key in point.disk_keys])
        except unreadable_errors:
            unreadable.add(point_id)
            points[point_id] = set()
            continue
        points[point_id] = set(needed)
        wanted.update(needed)
    return points, wanted, unreadable


def local_chunk_ok(store: Any, digest: bytes, length: int) -> bool:
    """The store's own decode-and-hash check on the chunk file, without moving anything aside."""
    from vault.engine.errors import ChunkError
    from vault.engine.format import decode_chunk

    try:
        payload = store.chunk_path(digest).read_bytes()
        decode_chunk(payload, digest, length, verify=True)
    except (OSError, ChunkError, ValueError):
        return False
    return True


@dataclass
class TierCheck:
    points: dict[str, set[bytes]]  # point id -> the digests it needs ("" marks an unreadable point)
    bad_chunks: set[bytes]
    unreadable_points: set[str]

    def point_ok(self, point_id: str) -> bool:
        needed = self.points.get(point_id)
        return needed is not None and point_id not in self.unreadable_points and not (needed & self.bad_chunks)


def check_local() -> TierCheck:
    from vault import engine
    from vault.storage import local_store

    store = local_store()
    points, wanted, unreadable = _points_and_chunks(store, (engine.StoreError,))
    with ThreadPoolExecutor(2) as pool:
        verdicts = pool.map(lambda item: (item[0], local_chunk_ok(store, *item)), wanted.items())
        bad = {digest for digest, ok in verdicts if not ok}
    return TierCheck(points, bad, unreadable)


class VaultChecker:
    """Vault chunks: presence from one listing each time; content hashed once per blob version (the
    vault writes a blob once; a changed size or time means another version, hashed again)."""

    def __init__(self) -> None:
        self.verified: set[tuple[str, int, Any]] = set()

    def check(self) -> TierCheck | None:
        from vault import engine
        from vault.engine.format import decode_chunk
        from vault.storage import vault_if_configured

        vault = vault_if_configured()
        if vault is None:
            return None
        vault.open(create=True)
        points, wanted, unreadable = _points_and_chunks(vault, (engine.StoreError, engine.BackendError))
        listing = vault.chunk_blobs()
        bad = set()

        def content_ok(digest: bytes, length: int) -> bool:
            name = vault.chunk_name(digest)
            info = listing.get(name)
            if info is None:
                return False
            version = (name, info.size, info.modified)
            if version in self.verified:
                return True
            try:
                decode_chunk(vault.sealer.unseal(vault.backend.get(name), name), digest, length, verify=True)
            except Exception:  # missing, unsealable, wrong hash: the vault copy is not there
                return False
            self.verified.add(version)
            return True

        with ThreadPoolExecutor(4) as pool:
            for digest, ok in pool.map(lambda item: (item[0], content_ok(*item)), wanted.items()):
                if not ok:
                    bad.add(digest)
        return TierCheck(points, bad, unreadable)


def _rows_not_restorable(rows: dict[str, Any], local: TierCheck, vault: TierCheck | None, figures: Figures) -> set[str]:
    """A row the product shows as restorable must have its store point (and its vault copy, when it
    says it is in the vault), old or new; the ids of those that do not, each with a note."""
    from vault.models import RecoveryPoint

    lost: set[str] = set()
    for pid, row in rows.items():
        if row.local and pid not in local.points:
            lost.add(pid)
            figures.notes.append(f"row {pid[:8]} has no store point")
        in_vault = row.vault_status == RecoveryPoint.VaultStatus.REPLICATED
        if in_vault and vault is not None and not vault.point_ok(pid):
            lost.add(pid)
            figures.notes.append(f"row {pid[:8]} says it is in the vault, but its vault copy is not whole")
    return lost


# Snapshots --------------------------------------------------------------------------------------


def backup_snapshots_left() -> tuple[int, list[str]]:
    """Our backup snapshots still on any VM, read from vCenter through the product's inventory API."""
    from inventory import vcenter as vsphere
    from inventory.connection import open_connection
    from inventory.models import VCenter, VirtualMachine
    from protection.backup import SNAPSHOT_NAME

    count, where = 0, []
    for vc in VCenter.objects.all():
        with open_connection(vc) as conn:
            for vm in VirtualMachine.objects.filter(vcenter=vc, removed_at__isnull=True):
                with contextlib.suppress(vsphere.NotFound):
                    ours = [s for s in vsphere.list_snapshots(conn, vm.moref) if s.name == SNAPSHOT_NAME]
                    if ours:
                        count += len(ours)
                        where.append(f"{vm.name}×{len(ours)}")
    return count, where


# Points -----------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """The points that were whole before a fault: each must still be whole afterwards."""

    local: set[str]
    vault: set[str]


class Measurer:
    def __init__(self) -> None:
        self.vault = VaultChecker()

    def baseline(self) -> Baseline:
        from vault.models import RecoveryPoint

        rows = retrying(lambda: list(RecoveryPoint.objects.filter(damaged=False)), "reading points")
        local = check_local()
        vault = self.vault.check()
        return Baseline(
            local={str(r.pk) for r in rows if r.local and local.point_ok(str(r.pk))},
            vault={
                str(r.pk)
                for r in rows
                if vault is not None
                and r.vault_status == RecoveryPoint.VaultStatus.REPLICATED
                and vault.point_ok(str(r.pk))
            },
        )

    @staticmethod
    def count_stuck(figures: Figures, *, already: set[str] | None = None) -> set[str]:
        """Add the JobRun rows not final (after settle()) to figures, except those `already` counted;
        returns the ids of all of them."""
        from jobs.models import JobRun

        rows = retrying(lambda: list(JobRun.objects.exclude(status__in=JobRun.FINAL)), "reading jobs")
        new = [run for run in rows if str(run.pk) not in (already or set())]
        figures.jobs_stuck += len(new)
        for run in new[:5]:
            started = f"running since {run.started:%H:%M:%S}" if run.started else "never started"
            figures.notes.append(f"stuck: {run.kind} {str(run.pk)[:8]} {run.status}, {started} ({run.target_label})")
        return {str(run.pk) for run in rows}

    def count(self, figures: Figures, before: Baseline, *, removed_on_purpose: set[str] | None = None) -> None:
        """Add this scenario's losses (points, chunks, snapshots) to figures (after settle())."""
        from vault.models import RecoveryPoint

        rows = {str(r.pk): r for r in retrying(lambda: list(RecoveryPoint.objects.all()), "reading points")}
        local = check_local()
        vault = self.vault.check()
        removed_on_purpose = removed_on_purpose or set()
        lost = {pid for pid in before.local - removed_on_purpose if pid not in rows or not local.point_ok(pid)}
        lost |= {
            pid
            for pid in before.vault - removed_on_purpose
            if pid not in rows or vault is None or not vault.point_ok(pid)
        }
        lost |= _rows_not_restorable(rows, local, vault, figures)
        figures.points_lost += len(lost)
        if lost:
            figures.notes.append("points lost: " + ", ".join(sorted(p[:8] for p in lost)))
        figures.chunks_lost += len(local.bad_chunks) + (len(vault.bad_chunks) if vault else 0)
        if local.bad_chunks:
            figures.notes.append(f"local chunks missing or corrupt: {len(local.bad_chunks)}")
        if vault and vault.bad_chunks:
            figures.notes.append(f"vault chunks missing or corrupt: {len(vault.bad_chunks)}")
        orphans = sorted(set(local.points) - set(rows))
        if orphans:
            figures.notes.append(f"{len(orphans)} store point(s) without a row (kept, not counted as lost)")
        snapshots, where = retrying(backup_snapshots_left, "listing snapshots")
        figures.snapshots_left += snapshots
        if where:
            figures.notes.append("snapshots left on " + ", ".join(where))
