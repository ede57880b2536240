"""What the Vault page and `manage.py vault status` show: capacity, ratios, lag, damage, last GC and verify, and
the status of an Azure Recovery Services vault beside them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.db.models import Count, Q, Sum
from django.utils import timezone

from jobs.models import JobRun
from vault import actions
from vault import recovery_services as rs
from vault.engine import CHUNK_SIZE
from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint, RecoveryPointDisk, VaultSettings, held_in
from vault.storage import backend_for
from vault.usage import local_store_bytes


@dataclass
class VaultOverview:
    config: VaultSettings
    description: str
    local_points: int
    vault_points: int
    local_used_bytes: int
    logical_bytes: int  # what the local points would take as plain disk images
    dedup_ratio: float | None
    compression_ratio: float | None
    backlog: int  # points that should be in the vault and are not
    damaged_points: int
    repaired_points: int  # damage found and since repaired
    oldest_backlog: RecoveryPoint | None
    lag: dt.timedelta | None
    last_gc: JobRun | None
    last_verify: JobRun | None
    last_vault_verify: JobRun | None
    tiers: dict[str, dict[str, int]] = field(default_factory=dict)
    usage_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def run(job: JobRun | None) -> dict[str, Any] | None:
            if job is None:
                return None
            return {"id": str(job.pk), "status": job.status, "finished": job.finished, "result": job.result}

        return {
            "vault": self.description,
            "encrypted": self.config.encrypted,
            "key_fingerprint": self.config.key_fingerprint or None,
            "local_points": self.local_points,
            "vault_points": self.vault_points,
            "local_used_bytes": self.local_used_bytes,
            "logical_bytes": self.logical_bytes,
            "dedup_ratio": self.dedup_ratio,
            "compression_ratio": self.compression_ratio,
            "replication_backlog": self.backlog,
            "damaged_points": self.damaged_points,
            "repaired_points": self.repaired_points,
            "replication_lag_seconds": self.lag.total_seconds() if self.lag else 0,
            "vault_tiers": self.tiers,
            "vault_usage_measured_at": self.usage_at,
            "last_gc": run(self.last_gc),
            "last_verify": run(self.last_verify),
            "last_vault_verify": run(self.last_vault_verify),
        }


def _last(kind: str, **params: Any) -> JobRun | None:
    runs = JobRun.objects.filter(kind=kind, status__in=JobRun.FINAL).defer("log", "traceback").order_by("-created")
    for run in runs[:50]:
        if all(run.params.get(k, v if k != "tier" else "local") == v for k, v in params.items()):
            return run
    return None


def ratios() -> tuple[float | None, float | None]:
    """(deduplication, compression) of the local points, from what their backups recorded:
    dedup = non-zero chunks referenced / chunks stored; compression = plain size of the stored
    chunks / bytes they took. None until there is a point."""
    disks = RecoveryPointDisk.objects.filter(point__local=True).aggregate(
        chunks=Sum("chunks"), zero=Sum("zero_chunks"), new=Sum("new_chunks"), new_bytes=Sum("new_bytes")
    )
    nonzero = (disks["chunks"] or 0) - (disks["zero"] or 0)
    dedup = nonzero / disks["new"] if disks["new"] else None
    compression = (disks["new"] or 0) * CHUNK_SIZE / disks["new_bytes"] if disks["new_bytes"] else None
    return dedup, compression


def overview() -> VaultOverview:
    from vault.jobs import GC_KIND, VERIFY_KIND  # jobs imports this app's actions; keep the import local

    config = VaultSettings.current()
    counts = RecoveryPoint.objects.aggregate(
        n_local=Count("pk", filter=held_in(LOCAL_TIER)),
        n_vault=Count("pk", filter=held_in(VAULT_TIER)),
        logical=Sum("logical_bytes", filter=held_in(LOCAL_TIER)),
        n_damaged=Count("pk", filter=Q(damaged=True)),
        n_repaired=Count("pk", filter=Q(damaged=False, repaired_at__isnull=False)),
    )
    dedup, compression = ratios()
    backlog = actions.replication_backlog() if config.enabled else []
    oldest = backlog[0] if backlog else None
    description = backend_for(config).description if config.enabled else "none"
    return VaultOverview(
        config=config,
        description=description,
        local_points=counts["n_local"],
        vault_points=counts["n_vault"],
        local_used_bytes=local_store_bytes(),
        logical_bytes=counts["logical"] or 0,
        dedup_ratio=dedup,
        compression_ratio=compression,
        backlog=len(backlog),
        damaged_points=counts["n_damaged"],
        repaired_points=counts["n_repaired"],
        oldest_backlog=oldest,
        lag=timezone.now() - oldest.created if oldest else None,
        last_gc=_last(GC_KIND),
        last_verify=_last(VERIFY_KIND, tier="local"),
        last_vault_verify=_last(VERIFY_KIND, tier="vault"),
        tiers=config.usage.get("tiers", {}),
        usage_at=config.usage.get("at"),
    )


def recent_points(limit: int = 50) -> list[RecoveryPoint]:
    return list(RecoveryPoint.objects.select_related("vm").prefetch_related("pins").order_by("-created")[:limit])


class RecoveryServicesPanel(TypedDict, total=False):
    """The context of vault/_recovery_services.html (the view adds refresh_url)."""

    not_configured: bool
    status: rs.RecoveryServicesStatus
    error: str  # one sentence: why the vault could not be read


def recovery_services_panel() -> RecoveryServicesPanel:
    """The configured Recovery Services vault's status, read now with the server's own Azure identity."""
    config = VaultSettings.current()
    panel: RecoveryServicesPanel = {"not_configured": not config.recovery_services_configured}
    if config.recovery_services_configured:
        try:
            target = rs.RecoveryServicesConfig(
                config.rs_subscription_id, config.rs_resource_group, config.rs_vault_name
            )
            panel["status"] = rs.read_with_default_credential(target)
        except (ValueError, rs.RecoveryServicesError) as exc:  # names Azure refuses, or a failed read
            panel["error"] = str(exc)
    return panel
