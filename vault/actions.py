"""Changes to the vault and to recovery points: settings, keys, locks, deletion and retention.

Each change is audited in its own transaction. Deleting a point goes through `_remove_point` only,
which refuses a point under a retention lock or pinned in use (`vault.pins`) whatever asked for it
(page, command line or a job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from django.db import router, transaction
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.utils import timezone

from audit.actions import SYSTEM_ACTOR, record
from jobs.models import JobRun
from jobs.runner import enqueue
from vault import archive, engine, retention
from vault.endpoints import EndpointRefused, require_https, secret_for
from vault.engine import tiers
from vault.engine.sealing import generate_key, parse_key
from vault.models import MIN_GC_GRACE_HOURS, VAULT_TIER, RecoveryPoint, VaultSettings, pin_refusal, pinned_by
from vault.storage import backend_for, local_store, remote_vault

REPLICATE_KIND = "vault.replicate"
RETENTION_ACTOR = "retention"

SETTINGS_FIELDS = [
    "kind",
    "directory",
    "account_url",
    "container",
    "auth",
    "upload_threads",
    "bandwidth_mb_per_s",
    "tier_after_days",
    "tier",
    "gc_grace_hours",
    "rs_subscription_id",
    "rs_resource_group",
    "rs_vault_name",
]


# Changing any of these points the product at another vault.
LOCATION_FIELDS = ["kind", "directory", "account_url", "container"]


class VaultActionError(Exception):
    """A change that was refused; the message says why and nothing was changed."""


class PointLocked(VaultActionError):
    pass


class PointInUse(VaultActionError):
    """The point is pinned (`vault.pins`): an instant recovery runs from it."""


# Settings and keys ------------------------------------------------------------------------------


def save_settings(user: Any, config: VaultSettings, *, secret: str | None = None) -> VaultSettings:
    """Save edited settings (`config` carries the new field values); `secret` None keeps the stored one,
    refused (VaultActionError) when the endpoint changes or is not HTTPS (vault.endpoints)."""
    with transaction.atomic():
        before = VaultSettings.objects.select_for_update().get_or_create(pk=1)[0]
        _check_endpoint(config, before, secret)
        changes = {
            name: [_plain(getattr(before, name)), _plain(getattr(config, name))]
            for name in SETTINGS_FIELDS
            if getattr(before, name) != getattr(config, name)
        }
        if secret is not None and secret != before.secret:
            config.secret = secret
            changes["secret"] = ["(hidden)", "(changed)"]
        else:
            config.secret_encrypted = before.secret_encrypted
        config.encryption_key_encrypted = before.encryption_key_encrypted
        config.key_fingerprint = before.key_fingerprint
        config.pk = 1
        config.save()
        if set(changes) & set(LOCATION_FIELDS):
            # Another place: what was replicated to the old one is not in the new one. The old
            # location is left as it is; every point is replicated again to the new one, except
            # those retention already pruned from the vault: they stay out of every vault.
            stay = [RecoveryPoint.VaultStatus.NOT_REPLICATED, RecoveryPoint.VaultStatus.PRUNED]
            moved = RecoveryPoint.objects.exclude(vault_status__in=stay).update(
                vault_status=RecoveryPoint.VaultStatus.NOT_REPLICATED, vault_at=None, vault_verified_at=None
            )
            changes["points_to_replicate_again"] = [None, moved]
        if changes:
            record(user, "vault.settings", target=config, target_label="Vault settings", details={"changes": changes})
    return config


def check_vault(config: VaultSettings, *, secret: str | None = None) -> str:
    """Reach the vault these settings describe, as a replication would; VaultActionError with one
    clear sentence otherwise. Creates the Azure container if it is missing. Returns a description.
    The stored secret is used only if the endpoint is the one it was saved for, and only over HTTPS."""
    secret = _check_endpoint(config, VaultSettings.objects.filter(pk=1).first(), secret)
    try:
        backend = backend_for(config, secret=secret, quick=True)
        ensure = getattr(backend, "ensure_container", None)
        if ensure is not None:
            ensure()
        vault = engine.RemoteVault(backend, parse_key(config.encryption_key) if config.encrypted else None)
        vault.open()
        # Write, read back and delete a probe, as a replication would: catches a read-only share,
        # a missing directory and a SAS token without write or delete permission.
        probe = f"locks/probe-{secrets.token_hex(8)}"
        backend.put(probe, b"probe", overwrite=True)
        if backend.get(probe) != b"probe":
            raise engine.BackendError(f"{backend.description} returned other bytes than were written")
        backend.delete(probe)
    except (engine.BackendError, engine.StoreError, OSError, ValueError) as exc:
        raise VaultActionError(f"The vault cannot be used: {exc}") from None
    return backend.description


def _check_endpoint(config: VaultSettings, stored: VaultSettings | None, secret: str | None) -> str | None:
    """The secret `config` may be tried with; VaultActionError before anything is sent otherwise."""
    try:
        usable = secret_for(config, stored, secret)
        require_https(config, usable)
    except EndpointRefused as exc:
        raise VaultActionError(str(exc)) from None
    return usable


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float) else str(value)


def _vault_has_points() -> bool:
    return RecoveryPoint.objects.in_tier(VAULT_TIER).exists()


def fingerprint(key_text: str) -> str:
    return hashlib.sha256(parse_key(key_text)).hexdigest()[:16]


def create_encryption_key(user: Any) -> str:
    """Turn on encryption with a new key; returned once, for the administrator to keep. Only for a
    vault that holds no points yet (existing blobs cannot be re-encrypted in place)."""
    return _set_key(user, generate_key(), "vault.key.created")


def import_encryption_key(user: Any, key_text: str) -> None:
    """Enter the key of an existing encrypted vault (e.g. this server was rebuilt)."""
    try:
        parse_key(key_text)
    except ValueError as exc:
        raise VaultActionError(f"That is not a vault key: {exc}.") from None
    _set_key(user, key_text.strip(), "vault.key.imported", allow_with_points=True)


def _set_key(user: Any, key_text: str, action: str, *, allow_with_points: bool = False) -> str:
    with transaction.atomic():
        config = VaultSettings.objects.select_for_update().get_or_create(pk=1)[0]
        if not allow_with_points and (config.encrypted or _vault_has_points()):
            raise VaultActionError(
                "The vault already holds recovery points or has a key: encryption can only be turned on for an "
                "empty vault. Use a new container or directory to start an encrypted vault."
            )
        config.encryption_key = key_text
        config.key_fingerprint = fingerprint(key_text)
        config.save(update_fields=["encryption_key_encrypted", "key_fingerprint", "updated"])
        record(
            user, action, target=config, target_label="Vault settings", details={"fingerprint": config.key_fingerprint}
        )
    return key_text


# Replication ------------------------------------------------------------------------------------


def enqueue_replication(point: RecoveryPoint, *, user: Any = None) -> JobRun | None:
    """Queue a copy of the point to the vault (None when no vault is configured, or when the point
    was pruned from the vault: retention decided the vault is done with it, and queuing it again
    would upload it every night only for the next prune to remove it)."""
    if not VaultSettings.current().enabled:
        return None
    if RecoveryPoint.objects.filter(pk=point.pk, vault_status=RecoveryPoint.VaultStatus.PRUNED).exists():
        return None
    with transaction.atomic():
        RecoveryPoint.objects.filter(pk=point.pk, vault_status=RecoveryPoint.VaultStatus.NOT_REPLICATED).update(
            vault_status=RecoveryPoint.VaultStatus.PENDING
        )
        return enqueue(
            REPLICATE_KIND,
            params={"point_ids": [str(point.pk)]},
            target=point.vm,
            user=user,
            title=f"Replicate {point.vm.name} to the vault",
        )


def replication_backlog() -> list[RecoveryPoint]:
    """Local points that should be in the vault and are not: what "replication lag" counts."""
    return list(
        RecoveryPoint.objects.filter(local=True, group__policy__replicate=True, damaged=False)
        .exclude(vault_status__in=[RecoveryPoint.VaultStatus.REPLICATED, RecoveryPoint.VaultStatus.PRUNED])
        .select_related("vm")
        .order_by("created")
    )


# Locks and deletion -----------------------------------------------------------------------------


def lock_point(user: Any, point: RecoveryPoint, until: dt.datetime) -> RecoveryPoint:
    """Lock a point until `until`. A lock can be extended, never shortened or removed."""
    now = timezone.now()
    if until <= now:
        raise VaultActionError("A retention lock must end in the future.")
    with transaction.atomic():
        point = RecoveryPoint.objects.select_for_update().select_related("vm").get(pk=point.pk)
        if point.locked_until and until < point.locked_until:
            raise VaultActionError(
                f"This point is locked until {point.locked_until:%Y-%m-%d %H:%M %Z}; a lock can only be extended."
            )
        before = point.locked_until
        point.locked_until = until
        point.save(update_fields=["locked_until"])
        details: dict[str, Any] = {
            "vm": point.vm.name,
            "from": before.isoformat() if before else None,
            "until": until.isoformat(),
        }
        details["immutable_in_vault"] = lock_in_vault(point)
        record(user, "point.lock", target=point, details=details)
    return point


def lock_in_vault(point: RecoveryPoint) -> bool:
    """Also ask the storage service to refuse deleting the point's index and manifest blobs before
    the lock ends (Azure version-level immutability). False where unsupported (a directory,
    Azurite, an account without it): the product's own lock, checked on every delete, still holds."""
    if point.vault_status != RecoveryPoint.VaultStatus.REPLICATED or point.locked_until is None:
        return False
    try:
        vault = remote_vault()
        names = [engine.remote.manifest_name(str(point.pk))]
        names += [engine.remote.index_name(str(point.pk), str(disk.key)) for disk in point.disks.all()]
        return all([vault.backend.set_immutable_until(name, point.locked_until) for name in names])
    except (engine.BackendError, engine.StoreError):
        return False


def rehydrate_point(user: Any, point: RecoveryPoint, *, priority: str = "Standard") -> tiers.ArchiveState:
    """Start moving a vault point's archived chunks back to Hot, which Azure bills and completes
    within hours (the caller has confirmed both); audited with what was asked. Returns the state
    after it (none archived when the service rehydrated at once, as Azurite does)."""
    if priority not in archive.PRIORITIES:
        raise VaultActionError(f"Rehydration priority is Standard or High, not {priority!r}.")
    if point.vault_status != RecoveryPoint.VaultStatus.REPLICATED:
        raise VaultActionError("This point is not in the vault: there is nothing to rehydrate.")
    try:
        before, after = tiers.start_rehydration(remote_vault(), str(point.pk), priority=priority)
    except (engine.BackendError, engine.StoreError) as exc:
        raise VaultActionError(f"The rehydration could not be started: {exc}") from None
    with transaction.atomic():
        archive.record_state(point, after)
        if before.archived:
            point.rehydration_priority, point.rehydration_requested_at = priority, timezone.now()
            point.save(update_fields=["rehydration_priority", "rehydration_requested_at"])
        details = {"priority": priority, "archived_chunks": before.archived, "archived_bytes": before.archived_bytes}
        record(user, "point.rehydrate", target=point, details={**details, "still_archived": after.archived})
    return after


def delete_point(user: Any, point: RecoveryPoint) -> None:
    """Delete a point from both tiers (an administrator's explicit request)."""
    with transaction.atomic():
        removed = _remove_point(point, local=True, vault=True)
        record(user, "point.delete", target_label=str(point), details={"point": str(point.pk), "removed": removed})


def _remove_point(point: RecoveryPoint, *, local: bool, vault: bool) -> list[str]:
    """Remove the point from the tiers asked for; the row goes when no tier holds it. Refuses a
    locked or pinned point (`vault.pins`). Returns the tiers it was removed from.

    The row stays locked (SELECT ... FOR UPDATE, as `lock_point` takes it) from the lock check to
    the end of the removal: a lock being set meanwhile either committed before the check, and is
    seen, or waits until the removal is over."""
    now = timezone.now()
    with transaction.atomic():
        # of=("self",): lock the point's row only, not the VM row joined for its name.
        point = RecoveryPoint.objects.select_for_update(of=("self",)).select_related("vm").get(pk=point.pk)
        if point.is_locked(now):
            raise PointLocked(f"{point} is under a retention lock until {point.locked_until:%Y-%m-%d %H:%M %Z}.")
        # Under the row lock that `vault.pins.pin` also takes: a pin made before this is seen here.
        in_use = pin_refusal(point.pk)
        if in_use:
            raise PointInUse(in_use)
        try:
            return _remove_from_tiers(point, local=local, vault=vault)
        except (engine.StoreError, engine.BackendError) as exc:
            raise VaultActionError(f"{point} was not deleted: {exc}") from None


def _remove_from_tiers(point: RecoveryPoint, *, local: bool, vault: bool) -> list[str]:
    leaves_local = not point.local or local
    leaves_vault = point.vault_status != RecoveryPoint.VaultStatus.REPLICATED or vault
    if leaves_local and leaves_vault:
        _check_row_can_go(point)
    removed = []
    if local and point.local:
        with contextlib.suppress(engine.PointNotFound):  # already gone: the row catches up
            local_store().delete_point(str(point.pk))
        removed.append("local")
        point.local = False
    if vault and point.vault_status == RecoveryPoint.VaultStatus.REPLICATED:
        with contextlib.suppress(engine.PointNotFound):
            remote_vault().delete_point(str(point.pk))
        removed.append("vault")
        # Not "not replicated": that would make the catch-up upload it again within minutes.
        point.vault_status = RecoveryPoint.VaultStatus.PRUNED
        point.vault_at = None
    if not point.local and point.vault_status != RecoveryPoint.VaultStatus.REPLICATED:
        point.delete()
    else:
        point.save(update_fields=["local", "vault_status", "vault_at"])
    return removed


def _check_row_can_go(point: RecoveryPoint) -> None:
    """Refuse before any tier is touched when the row could not be deleted afterwards (a PROTECT
    reference, e.g. a record of something that used the point): deleting the stored point and then
    failing on the row would leave a row naming nothing."""
    try:
        Collector(using=router.db_for_write(RecoveryPoint)).collect([point])
    except (ProtectedError, RestrictedError) as exc:
        blocking = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        what = next(iter(blocking))._meta.verbose_name_plural
        raise VaultActionError(f"{point} was not deleted: {what} still refer to it.") from None


def gc_grace_seconds(config: VaultSettings) -> int:
    """How long a garbage collection leaves unreferenced chunks alone, never under the floor: a row
    written straight to the database (or before the floor existed) may still say 0, and a chunk a
    backup has just decided to reuse must not be swept under it."""
    return max(MIN_GC_GRACE_HOURS, config.gc_grace_hours or 0) * 3600


# Retention --------------------------------------------------------------------------------------


@dataclass
class PruneItem:
    point: RecoveryPoint
    tier: str  # "local" or "vault"
    reason: str


@dataclass
class PrunePlan:
    remove: list[PruneItem] = field(default_factory=list)
    held: list[PruneItem] = field(default_factory=list)  # due to go, kept for now (reason says why)
    kept: int = 0

    def bytes_local(self) -> int:
        return sum(i.point.logical_bytes for i in self.remove if i.tier == "local")


NEWEST_INTACT_REASON = "the newest intact point: newer points are damaged"


def plan_prune(now: dt.datetime | None = None) -> PrunePlan:
    """What retention would remove now, per VM and tier, with each point's reason."""
    now = now or timezone.now()
    plan = PrunePlan()
    vault_enabled = VaultSettings.current().enabled
    by_vm: dict[int, list[RecoveryPoint]] = defaultdict(list)
    points = RecoveryPoint.objects.select_related("vm", "group__policy").order_by("-created")
    for point in points:
        by_vm[point.vm_id].append(point)
    for vm_points in by_vm.values():
        policy = next((p.group.policy for p in vm_points if p.group and hasattr(p.group, "policy")), None)
        if policy is None:
            plan.kept += len(vm_points)  # no policy any more: keep everything until someone decides
            continue
        _plan_local(plan, [p for p in vm_points if p.local], policy, vault_enabled, now)
        replicated = [p for p in vm_points if p.vault_status == RecoveryPoint.VaultStatus.REPLICATED]
        _plan_vault(plan, replicated, policy, now)
    _hold_pinned(plan)
    return plan


def _hold_pinned(plan: PrunePlan) -> None:
    """Keep points in use (`vault.pins`) past their expiry: held, saying what uses them, so the job log
    says so; the first prune after the last pin goes removes them. (`_remove_point` refuses a point
    pinned after the plan too.)"""
    for item in list(plan.remove):
        users = pinned_by(item.point.pk)
        if users:
            plan.remove.remove(item)
            item.reason = f"in use by {users}, kept past its expiry until that ends (the next prune after removes it)"
            plan.held.append(item)


def _newest_intact_behind_damage(points: list[RecoveryPoint]) -> RecoveryPoint | None:
    """The newest undamaged point of a VM's tier when a newer one is damaged, else None. Retention
    would otherwise count the damaged points as "the newest" and let the last good one age out."""
    newest_first = sorted(points, key=lambda p: (p.created, str(p.pk)), reverse=True)
    intact = next((p for p in newest_first if not p.damaged), None)
    if intact is None or intact is newest_first[0]:
        return None
    return intact


def _refs(points: list[RecoveryPoint]) -> tuple[list[retention.PointRef], dict[str, RecoveryPoint]]:
    by_id = {str(p.pk): p for p in points}
    return [retention.PointRef(str(p.pk), p.created, p.locked_until) for p in points], by_id


def _plan_local(
    plan: PrunePlan, points: list[RecoveryPoint], policy: Any, vault_enabled: bool, now: dt.datetime
) -> None:
    if not points or (policy.local_days is None and policy.local_count is None):
        plan.kept += len(points)
        return
    refs, by_id = _refs(points)
    decision = retention.local_retention(refs, days=policy.local_days or 0, count=policy.local_count or 0, now=now)
    plan.kept += len(decision.keep)
    last_good = _newest_intact_behind_damage(points)
    # Pruned from the vault counts as done with the vault: waiting for a copy that will never be
    # made again would keep the point on this server for ever.
    vault_done = (RecoveryPoint.VaultStatus.REPLICATED, RecoveryPoint.VaultStatus.PRUNED)
    for ref in decision.remove:
        point = by_id[ref.id]
        item = PruneItem(point, "local", decision.reasons[ref.id])
        if point is last_good:
            item.reason = NEWEST_INTACT_REASON
            plan.held.append(item)
        elif policy.replicate and vault_enabled and point.vault_status not in vault_done:
            item.reason = "waiting for its copy in the vault before leaving this server"
            plan.held.append(item)
        else:
            plan.remove.append(item)


def _plan_vault(plan: PrunePlan, points: list[RecoveryPoint], policy: Any, now: dt.datetime) -> None:
    if not points:
        return
    refs, by_id = _refs(points)
    decision = retention.gfs_retention(
        refs,
        daily=policy.vault_daily,
        weekly=policy.vault_weekly,
        monthly=policy.vault_monthly,
        yearly=policy.vault_yearly,
        tz=ZoneInfo(policy.timezone),
        now=now,
    )
    plan.kept += len(decision.keep)
    last_good = _newest_intact_behind_damage(points)
    for ref in decision.remove:
        point = by_id[ref.id]
        if point is last_good:
            plan.held.append(PruneItem(point, "vault", NEWEST_INTACT_REASON))
        else:
            plan.remove.append(PruneItem(point, "vault", decision.reasons[ref.id]))


def apply_prune(plan: PrunePlan, *, actor: Any = RETENTION_ACTOR) -> tuple[list[PruneItem], list[str]]:
    """Carry out a plan; returns what was removed and the problems (a point in use, a lock set
    since the plan) that kept some points for the next run."""
    done: list[PruneItem] = []
    problems: list[str] = []
    for item in plan.remove:
        try:
            removed = _prune_one(item, actor)
        except RecoveryPoint.DoesNotExist:
            continue
        except VaultActionError as exc:
            problems.append(f"{item.point}: {exc}")
            continue
        if removed:
            done.append(item)
    return done, problems


def _prune_one(item: PruneItem, actor: Any) -> list[str]:
    """Remove one planned point from its tier, and audit it in the same transaction."""
    with transaction.atomic():
        removed = _remove_point(item.point, local=item.tier == "local", vault=item.tier == "vault")
        if removed:
            details = {"point": str(item.point.pk), "tier": item.tier, "reason": item.reason}
            record(actor, "point.prune", target_label=str(item.point), details=details)
    return removed


__all__ = [
    "SYSTEM_ACTOR",
    "PointInUse",
    "PointLocked",
    "PruneItem",
    "PrunePlan",
    "VaultActionError",
    "apply_prune",
    "create_encryption_key",
    "delete_point",
    "enqueue_replication",
    "gc_grace_seconds",
    "import_encryption_key",
    "lock_point",
    "plan_prune",
    "replication_backlog",
    "save_settings",
]
