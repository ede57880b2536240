"""Background jobs of the vault: replication, verification and repair, retention, garbage collection, tiering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from jobs.models import JobRun
from jobs.registry import job_kind
from jobs.runner import JobCancelled, JobContext, JobFailed, enqueue
from vault import actions, archive, engine, healing
from vault import reconcile as _reconcile  # registers vault.reconcile
from vault.models import VAULT_TIER, RecoveryPoint, VaultSettings
from vault.storage import local_store, remote_vault, vault_if_configured
from vault.usage import record_storage_sample

VERIFY_KIND = "vault.verify"
REPAIR_KIND = "vault.repair"
RECONCILE_KIND = _reconcile.RECONCILE_KIND
PRUNE_KIND = "vault.prune"
GC_KIND = "vault.gc"
TIER_KIND = "vault.tier"
USAGE_KIND = "vault.usage"
# Nightly, in this order: rows and store agree before retention decides what goes.
MAINTENANCE_KINDS = (RECONCILE_KIND, PRUNE_KIND, GC_KIND, TIER_KIND)

_label = healing.point_label


def _actor(ctx: JobContext) -> Any:
    """Who audit rows written by a job name: the person who started it, else the job kind."""
    return ctx.run.created_by or ctx.run.kind


@job_kind(actions.REPLICATE_KIND, title="Replicate to the vault", queue="vault")
def replicate(ctx: JobContext, point_ids: list[str]) -> dict[str, Any]:
    """Copy points to the vault: only missing chunks, verified, the manifest last (see engine/replicate.py)."""
    config = VaultSettings.current()
    if not config.enabled:
        raise JobFailed("No vault is configured; the points stay on this server's disk.")
    vault = remote_vault(config)
    st = local_store()
    limit = config.bandwidth_mb_per_s * 1_000_000 if config.bandwidth_mb_per_s else None
    points = list(RecoveryPoint.objects.filter(pk__in=point_ids).select_related("vm").order_by("created"))
    totals = {"points": 0, "chunks_uploaded": 0, "bytes_uploaded": 0, "chunks_present": 0}
    for point in points:
        if point.vault_status == RecoveryPoint.VaultStatus.REPLICATED:
            ctx.log(f"{_label(point)}: already in the vault.")
            continue
        if point.vault_status == RecoveryPoint.VaultStatus.PRUNED:  # pruned after this job was queued
            ctx.log(f"{_label(point)}: pruned from the vault by retention; not copied again.")
            continue
        if not point.local:
            raise JobFailed(f"{_label(point)} is no longer in the local store, so it cannot be replicated.")
        ctx.log(f"{_label(point)}: replicating to {vault.description}.")
        ctx.set_total(None, "chunks")

        def show_progress(done: int, total: int) -> None:
            ctx.set_total(total, "chunks")  # the total is known once the point's indexes are read
            ctx.progress(done)

        try:
            stats = engine.replicate_point(
                st,
                vault,
                str(point.pk),
                limits=engine.UploadLimits(threads=config.upload_threads, bytes_per_second=limit),
                progress=show_progress,
                should_cancel=ctx.cancel_requested,
                meta={"replicated_at": timezone.now().isoformat()},
            )
        except engine.Cancelled:
            raise JobCancelled() from None
        except engine.ChunkCorrupt as exc:
            raise JobFailed(_corrupt_local_chunk(ctx, point, exc)) from None
        except (engine.StoreError, engine.BackendError) as exc:
            raise JobFailed(
                f"Replication of {_label(point)} failed: {exc}. It will be retried; the local copy is intact."
            ) from None
        RecoveryPoint.objects.filter(pk=point.pk).update(
            vault_status=RecoveryPoint.VaultStatus.REPLICATED,
            vault_at=timezone.now(),
            vault_bytes=stats.bytes_uploaded,
            vault_tier=engine.HOT,
        )
        point.refresh_from_db()
        if point.is_locked(timezone.now()) and actions.lock_in_vault(point):
            ctx.log(f"{_label(point)}: immutable in the vault until {point.locked_until:%Y-%m-%d}.")
        ctx.log(
            f"{_label(point)}: in the vault — {stats.chunks_uploaded} of {stats.chunks} chunks uploaded "
            f"({stats.bytes_uploaded / 2**20:.1f} MiB, {stats.rate / 1e6:.0f} MB/s); "
            f"{stats.chunks_present} were there already; presence and sizes verified."
        )
        totals["points"] += 1
        for name in ("chunks_uploaded", "bytes_uploaded", "chunks_present"):
            totals[name] += getattr(stats, name)
    return totals


def _corrupt_local_chunk(ctx: JobContext, point: RecoveryPoint, exc: engine.ChunkCorrupt) -> str:
    """Replication met a local chunk that fails its hash (the engine moved it aside and uploaded
    nothing of it): record the damage, repair it from the vault if it has a good copy, and say so."""
    digest = exc.digest.hex()
    actor = _actor(ctx)
    healing.mark_damaged(point, [f"{exc} (found by replication)"], healing.LOCAL, digests=[digest], actor=actor)
    outcome = healing.repair_damage(actor=actor)
    _log_outcome(ctx, outcome)
    found = f"Replication of {_label(point)} stopped: chunk {digest} of the local copy fails its hash check"
    if point.pk in {p.pk for p in outcome.points_repaired}:
        return f"{found}; nothing of it was uploaded, and it was repaired from the vault's copy. It will be retried."
    return f"{found}; nothing of it was uploaded and the point is marked damaged: {healing.NO_GOOD_COPY}."


@job_kind(VERIFY_KIND, title="Verify recovery points", queue="vault")
def verify(ctx: JobContext, point_ids: list[str], tier: str = "local") -> dict[str, Any]:
    """Re-read every chunk of the points, decompress and re-hash; record damaged points, repair what
    has a good copy in the other tier at once, and fail naming the VMs while damage remains."""
    in_vault = tier == healing.VAULT
    source: Any = remote_vault() if in_vault else local_store()
    points = list(RecoveryPoint.objects.in_tier(tier).filter(pk__in=point_ids).select_related("vm"))
    if in_vault:  # before any point is read: archived chunks refuse the verify, never rehydrated here
        try:
            archive.refuse_if_archived(source, points, nothing="nothing was verified")
        except engine.NeedsRehydration as exc:
            raise JobFailed(str(exc)) from None
        except (engine.BackendError, engine.StoreError) as exc:
            raise JobFailed(
                f"The vault could not be listed to find archived chunks; nothing was verified: {exc}"
            ) from None
    ctx.set_total(len(points), "points")
    actor = _actor(ctx)
    damaged: list[RecoveryPoint] = []
    vault_bad: set[str] = set()
    for point in points:
        ctx.check_cancelled()
        problems, digests = _check_point(source, point)
        stamp = {"vault_verified_at" if in_vault else "verified_at": timezone.now()}
        RecoveryPoint.objects.filter(pk=point.pk).update(**stamp)
        if problems:
            healing.mark_damaged(point, problems, tier, digests=digests, actor=actor)
            damaged.append(point)
            vault_bad.update(digests if in_vault else ())
            ctx.log(f"{_label(point)} ({tier}): DAMAGED — {problems[0]}", level="error")
        else:
            if point.damaged:
                healing.mark_intact(point, tier, actor=actor)
            ctx.log(f"{_label(point)} ({tier}): intact.")
        ctx.advance()
    result: dict[str, Any] = {"verified": len(points), "tier": tier, "damaged": len(damaged)}
    if not damaged:
        return result
    outcome = healing.repair_damage(actor=actor, vault_bad=vault_bad if in_vault else None)
    _log_outcome(ctx, outcome)
    remaining = [p for p in outcome.points_damaged if str(p.pk) in {str(d.pk) for d in damaged}]
    if remaining:
        raise JobFailed(healing.damage_remains(remaining, outcome, tier))
    return {**result, "repaired": len(damaged)}


def _check_point(source: Any, point: RecoveryPoint) -> tuple[list[str], list[str]]:
    """(damage sentences, hex digests of the bad chunks) of one point in one tier."""
    try:
        report = engine.verify_point(source, str(point.pk))
    except (engine.StoreError, engine.BackendError) as exc:
        return [str(exc)], []
    problems = [str(problem) for problem in report.problems]
    problems += [f"disk {d.disk_key}: {d.index_error}" for d in report.disks.values() if d.index_error]
    return problems, sorted({problem.digest for problem in report.problems})


def _log_outcome(ctx: JobContext, outcome: healing.RepairOutcome) -> None:
    for level, line in outcome.log_lines():
        ctx.log(line, level=level)


@job_kind(REPAIR_KIND, title="Repair damaged chunks", queue="vault")
def repair(ctx: JobContext) -> dict[str, Any]:
    """Bring back every bad chunk that has a good copy in the other tier (the local store's chunks
    moved aside, and the vault chunks recorded on damaged points), recheck the damaged points, and
    list what cannot be repaired."""
    outcome = healing.repair_damage(actor=_actor(ctx), requested=True)
    _log_outcome(ctx, outcome)
    if not (outcome.repaired_local or outcome.repaired_vault or outcome.unrepairable):
        ctx.log("No chunk is known to be bad in either tier: nothing to repair.")
    if outcome.points_damaged:
        raise JobFailed(healing.damage_remains(outcome.points_damaged, outcome))
    return outcome.as_dict()


@job_kind(PRUNE_KIND, title="Apply retention", queue="vault")
def prune(ctx: JobContext, dry_run: bool = False) -> dict[str, Any]:
    plan = actions.plan_prune()
    for item in plan.remove:
        ctx.log(f"{'Would remove' if dry_run else 'Removing'} {_label(item.point)} from {item.tier}: {item.reason}.")
    for item in plan.held:
        ctx.log(f"Keeping {_label(item.point)} in {item.tier} for now: {item.reason}.")
    if dry_run:
        return {"would_remove": len(plan.remove), "held": len(plan.held), "kept": plan.kept}
    done, problems = actions.apply_prune(plan)
    for problem in problems:
        ctx.log(f"Not removed: {problem}", level="warning")
    return {"removed": len(done), "held": len(plan.held), "kept": plan.kept, "problems": problems}


@job_kind(GC_KIND, title="Collect garbage", queue="vault")
def collect_garbage(ctx: JobContext, dry_run: bool = False) -> dict[str, Any]:
    """Sweep chunks no point needs, locally and in the vault, beside running backups (engine/gc.py)."""
    config = VaultSettings.current()
    grace = actions.gc_grace_seconds(config)
    result: dict[str, Any] = {}
    report = engine.collect_local(local_store(), grace_seconds=grace, dry_run=dry_run)
    ctx.log(report.summary())
    result["local"] = report.as_dict()
    vault = vault_if_configured()
    if vault is not None:
        try:
            vreport = engine.collect_vault(vault, grace_seconds=grace, dry_run=dry_run)
        except engine.VaultBusy as exc:
            ctx.log(f"Vault skipped: {exc}.", level="warning")
        else:
            ctx.log(vreport.summary())
            result["vault"] = vreport.as_dict()
    result["bytes_freed"] = sum(r["bytes_freed"] for r in result.values() if isinstance(r, dict))
    if not dry_run:
        record_storage_sample()  # the pages show the freed space now, not at the next hourly count
    return result


@job_kind(TIER_KIND, title="Move old vault points to a cheaper tier", queue="vault")
def tier(ctx: JobContext, dry_run: bool = False) -> dict[str, Any]:
    config = VaultSettings.current()
    if not config.enabled or not config.tier_after_days:
        ctx.log("Tiering is off (no vault, or no age set).")
        return {"moved": 0}
    cutoff = timezone.now() - dt.timedelta(days=config.tier_after_days)
    old = RecoveryPoint.objects.in_tier(VAULT_TIER).filter(created__lt=cutoff)
    # A point in use (vault.pins: an instant recovery reads it) keeps its chunks where they are, readable;
    # with it out of `old`, apply_tiering counts its chunks as a newer point's and moves none of them.
    in_use = old.filter(pins__isnull=False).distinct().count()
    if in_use:
        ctx.log(f"{in_use} point(s) in use (instant recovery) stay in their tier until that ends.")
    old = old.filter(pins__isnull=True)
    old_ids = [str(pk) for pk in old.values_list("pk", flat=True)]
    vault = remote_vault(config)
    report = engine.apply_tiering(vault, old_ids, config.tier, dry_run=dry_run)
    if not dry_run:
        moved = RecoveryPoint.objects.filter(pk__in=old_ids)  # as listed: a pin made since is seen below
        moved.update(vault_tier=config.tier)
        archive.record_states(vault, list(moved))  # what pages show instead of reading archived chunks
        for point in moved.filter(pins__isnull=False).distinct().select_related("vm"):
            ctx.log(f"{_label(point)} was pinned while tiering ran: its chunks may be in {config.tier}.", "warning")
    ctx.log(
        f"{report.points} point(s) older than {config.tier_after_days} days: {report.chunks_moved} chunk(s) "
        f"({report.bytes_moved / 2**20:.1f} MiB) {'would move' if dry_run else 'moved'} to {config.tier}; "
        f"{report.chunks_kept} shared with newer points stay."
    )
    return report.as_dict()


@job_kind(USAGE_KIND, title="Measure vault usage", queue="vault")
def usage(ctx: JobContext) -> dict[str, Any]:
    """Bytes per access tier in the vault (one listing), kept for the Vault page."""
    vault = vault_if_configured()
    if vault is None:
        return {}
    tiers: dict[str, dict[str, int]] = {}
    for info in vault.backend.list(""):
        entry = tiers.setdefault(info.tier, {"blobs": 0, "bytes": 0})
        entry["blobs"] += 1
        entry["bytes"] += info.size
    VaultSettings.objects.filter(pk=1).update(usage={"tiers": tiers, "at": timezone.now().isoformat()})
    ctx.log(", ".join(f"{name}: {v['bytes'] / 2**20:.1f} MiB in {v['blobs']} blobs" for name, v in tiers.items()))
    return {"tiers": tiers}


def enqueue_maintenance(user: Any = None) -> list[Any]:
    """Nightly, one after another: reconcile the store with the rows, retention, garbage collection,
    tiering and a usage count."""
    runs = []
    previous = None
    for kind in (*MAINTENANCE_KINDS, USAGE_KIND):
        previous = enqueue(kind, user=user, after=previous)
        runs.append(previous)
    return runs


def enqueue_verify(
    tier: str,
    *,
    user: Any = None,
    vm_name: str | None = None,
    points: Iterable[RecoveryPoint] | None = None,
    target_label: str | None = None,
    allow_empty: bool = False,
) -> JobRun:
    """Queue one verify of the points held in `tier`: all of them, one VM's, or those given (the page, `manage.py
    verify` and `manage.py vault verify` all start one here). Raises VaultActionError when there is nothing to
    verify, unless `allow_empty`: the Vault page's buttons always start a job, which reports it verified nothing."""
    scope = RecoveryPoint.objects.in_tier(tier)
    if vm_name:
        scope = scope.filter(vm__name=vm_name)
    if points is not None:
        scope = scope.filter(pk__in=[point.pk for point in points])
    archived_left_out = 0
    if tier == VAULT_TIER and points is None:
        # Reading archived chunks needs a billed rehydration: a verify of every vault point leaves out
        # those the cache knows archived (one of chosen points refuses instead, saying how to rehydrate).
        archived_left_out = scope.exclude(archived_chunks=0).count()
        scope = scope.filter(archived_chunks=0)
    ids = [str(pk) for pk in scope.values_list("pk", flat=True)]
    if not ids and not allow_empty:
        raise actions.VaultActionError(f"No recovery point to verify in the {tier} tier.")
    label = target_label or f"{len(ids)} point(s)"
    if archived_left_out:
        label += f" ({archived_left_out} in the Archive tier left out)"
    return enqueue(VERIFY_KIND, params={"point_ids": ids, "tier": tier}, user=user, target_label=label)


def enqueue_lagging_replications() -> int:
    """Every few minutes: queue points that should be in the vault and have no replication queued
    (a failed one, a vault configured after the backup, a worker that died)."""
    if not VaultSettings.current().enabled:
        return 0
    active = JobRun.objects.filter(
        kind=actions.REPLICATE_KIND, status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING]
    ).values_list("params", flat=True)
    busy = {pid for params in active for pid in params.get("point_ids", [])}
    queued = 0
    for point in actions.replication_backlog():
        if str(point.pk) not in busy:
            actions.enqueue_replication(point)
            queued += 1
    return queued
