"""How much the local store takes on disk, without walking it on every page load or alert check.

Counting means visiting every chunk file (a walk of the whole store), so it is done hourly by cron
into today's `StorageSample`, and pages and the store-nearly-full alert read that sample; only when
no sample of the last hour exists is the store walked (and the sample written) on the spot.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Sum
from django.utils import timezone

from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint, StorageSample, VaultSettings, held_in
from vault.storage import local_store

FRESH_FOR = dt.timedelta(hours=1)


def record_storage_sample() -> StorageSample:
    """Hourly (cron): today's storage figures, for the overview's growth chart and its numbers."""
    config = VaultSettings.current()
    tiers = config.usage.get("tiers", {})
    points = RecoveryPoint.objects.aggregate(
        n=Count("pk"),
        logical=Sum("logical_bytes", filter=held_in(LOCAL_TIER)),
        uploaded=Sum("vault_bytes", filter=held_in(VAULT_TIER)),
    )
    vault_bytes = sum(t["bytes"] for t in tiers.values()) if tiers else points["uploaded"] or 0
    sample, _ = StorageSample.objects.update_or_create(
        day=timezone.localdate(),
        defaults={
            "local_bytes": local_store().used_bytes(),
            "vault_bytes": vault_bytes,
            "logical_bytes": points["logical"] or 0,
            "points": points["n"],
        },
    )
    return sample


def local_store_bytes() -> int:
    """Bytes the local store takes, as counted within the last hour."""
    sample = StorageSample.objects.filter(updated__gte=timezone.now() - FRESH_FOR).order_by("-updated").first()
    return (sample or record_storage_sample()).local_bytes
