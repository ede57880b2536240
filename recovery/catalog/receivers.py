"""A new point is catalogued by a job queued when its row commits (`vault.signals.point_committed`).

A deleted point leaves nothing searchable: its CatalogPoint row goes with it (cascade), and here,
in the same transaction, every version whose range started or ended at it is narrowed to the VM's
remaining catalogued points, or removed when no remaining point holds it.

Connected in RecoveryConfig.ready(). Several points deleted at once (a VM's points, a prune) arrive
one by one after all their rows are gone; each step reads the points that remain, so any order works."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Max, Min
from django.db.models.signals import post_delete
from django.dispatch import receiver

from recovery.catalog.jobs import enqueue_catalog
from recovery.models import CatalogPath, CatalogPoint, CatalogVersion, CatalogVm, CatalogVolume
from vault.models import RecoveryPoint
from vault.signals import point_committed

log = logging.getLogger(__name__)


@receiver(point_committed, dispatch_uid="recovery.catalog.catalogue_new_point")
def catalogue_new_point(sender: Any, point: RecoveryPoint, **kwargs: Any) -> None:
    # enqueue() writes the JobRun in the point's transaction and queues it on commit. In a savepoint:
    # a failure here must not undo the backup's point (the backfill catalogues it later).
    try:
        with transaction.atomic():
            enqueue_catalog(point.vm)
    except Exception:
        log.exception("could not queue the catalog job for %s; the backfill will catalogue the point", point)


@receiver(post_delete, sender=CatalogPoint, dispatch_uid="recovery.catalog.forget_point")
def forget_point(sender: type[CatalogPoint], instance: CatalogPoint, **kwargs: Any) -> None:
    if instance.seq is None:
        return
    removed = instance.seq
    # The VM's lock row, so a catalogue of the VM running now does not interleave (it takes the same).
    list(CatalogVm.objects.select_for_update().filter(vm_id=instance.vm_id))
    remaining = CatalogPoint.objects.filter(vm_id=instance.vm_id, seq__isnull=False)
    before = remaining.filter(seq__lt=removed).aggregate(seq=Max("seq"))["seq"]
    after = remaining.filter(seq__gt=removed).aggregate(seq=Min("seq"))["seq"]
    # By volume ids, not a join: PostgreSQL would hash every volume's versions to join them.
    volume_ids = list(CatalogVolume.objects.filter(vm_id=instance.vm_id).values_list("pk", flat=True))
    versions = CatalogVersion.objects.filter(volume_id__in=volume_ids)

    starting = versions.filter(first_seq=removed)
    if after is None:
        starting.delete()
        if before is not None:
            # The point before is now the newest: what it held and the removed one did not is current again.
            versions.filter(last_seq=before).update(last_seq=None)
    else:
        # Held by a later point only if the range reaches it.
        starting.filter(last_seq__lt=after).delete()
        starting.update(first_seq=after)

    ending = versions.filter(last_seq=removed)
    if before is None:
        ending.delete()
    else:
        ending.filter(first_seq__gt=before).delete()
        # Current again if no later point remains (a newer point deleted in the same go).
        ending.update(last_seq=before if after is not None else None)
    # Paths no version holds any more are not searchable either.
    CatalogPath.objects.filter(volume_id__in=volume_ids, versions__isnull=True).delete()
