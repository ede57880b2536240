"""Write a point's files into the catalog: compare each entry with the VM's current version of its
path, keep what is unchanged, close what changed or vanished, add what is new.

The writer takes `VolumeListing`s whose entries may come from any iterator, so the real walk of a file
system and a benchmark's synthetic listing go through the same code. New versions are written in
batches (COPY on PostgreSQL, bulk INSERT elsewhere); an unchanged point writes one row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from recovery.models import CatalogFile, CatalogPoint, CatalogVm, CatalogVolume
from vault.models import RecoveryPoint

BATCH = 5000
# What makes two listings of a path the same version.
Fingerprint = tuple[bool, int, dt.datetime | None, str]


class OutOfOrder(Exception):
    """The point is older than the VM's newest catalogued point: the VM's catalog must be rebuilt."""


@dataclass(frozen=True)
class CatalogEntry:
    path: str  # absolute, as the file system layer gives it: "/Users/alice/notes.txt"
    is_dir: bool
    size: int
    modified: dt.datetime | None
    owner: str = ""

    @property
    def fingerprint(self) -> Fingerprint:
        return (self.is_dir, self.size, self.modified, self.owner)


@dataclass
class VolumeListing:
    disk_key: int
    volume_index: int
    entries: Iterable[CatalogEntry]
    label: str = ""
    fs_type: str = ""


@dataclass
class CatalogResult:
    entries: int = 0
    new_versions: int = 0
    closed_versions: int = 0
    notes: list[str] = field(default_factory=list)


def catalogue_point(point: RecoveryPoint, listings: Iterable[VolumeListing], *, note: str = "") -> CatalogResult:
    """Catalogue `point` (which must be newer than the VM's catalogued points) from `listings`.

    The CatalogPoint row is written first: it takes PostgreSQL's key-share lock on the point, so a
    delete of the point waits for this transaction (or this one fails if the delete came first), and
    both then take the VM's CatalogVm row in the same order, which cannot deadlock."""
    result = CatalogResult()
    with transaction.atomic():
        entry = CatalogPoint.objects.create(point=point, vm_id=point.vm_id)
        state, _ = CatalogVm.objects.select_for_update().get_or_create(vm_id=point.vm_id)
        head = _head(point)
        state.last_seq += 1
        state.save(update_fields=["last_seq", "updated"])
        seen: set[int] = set()
        for listing in listings:
            volume = _volume(point, listing)
            seen.add(volume.pk)
            _write_volume(volume, listing.entries, state.last_seq, head, result)
        if head is not None:
            gone = CatalogFile.objects.filter(volume__vm_id=point.vm_id, last_seq__isnull=True).exclude(
                volume_id__in=seen
            )
            result.closed_versions += gone.update(last_seq=head)
        entry.seq, entry.status, entry.catalogued = state.last_seq, CatalogPoint.Status.CATALOGUED, timezone.now()
        entry.entries, entry.new_versions = result.entries, result.new_versions
        entry.note = "; ".join([note, *result.notes] if note else result.notes)[:500]
        entry.save()
    return result


def mark_unavailable(point: RecoveryPoint, why: str) -> None:
    """Remember that `point` is not catalogued and why (held only in the vault, unreadable)."""
    CatalogPoint.objects.update_or_create(
        point=point,
        defaults={"vm_id": point.vm_id, "status": CatalogPoint.Status.UNAVAILABLE, "note": why[:500], "seq": None},
    )


def _head(point: RecoveryPoint) -> int | None:
    """The sequence number of the VM's newest catalogued point (None: the first), refusing an older point."""
    newest = (
        CatalogPoint.objects.filter(vm_id=point.vm_id, seq__isnull=False)
        .select_related("point")
        .order_by("-seq")
        .first()
    )
    if newest is None:
        return None
    if newest.point.created >= point.created:
        raise OutOfOrder(f"{point} is older than the catalogued {newest.point}")
    return newest.seq


def _volume(point: RecoveryPoint, listing: VolumeListing) -> CatalogVolume:
    volume, _ = CatalogVolume.objects.update_or_create(
        vm_id=point.vm_id,
        disk_key=listing.disk_key,
        volume_index=listing.volume_index,
        defaults={"label": listing.label[:255], "fs_type": listing.fs_type[:16]},
    )
    return volume


def _write_volume(
    volume: CatalogVolume, entries: Iterable[CatalogEntry], seq: int, head: int | None, result: CatalogResult
) -> None:
    current = _current_versions(volume) if head is not None else {}
    changed: list[int] = []
    batch: list[CatalogEntry] = []
    listed: set[str] = set()
    for entry in entries:
        if entry.path in listed:  # one version per path and point, whatever the listing repeats
            continue
        listed.add(entry.path)
        result.entries += 1
        known = current.pop(entry.path, None)
        if known is not None:
            if known[1] == entry.fingerprint:
                continue
            changed.append(known[0])
        batch.append(entry)
        if len(batch) >= BATCH:
            result.new_versions += _insert(volume.pk, batch, seq)
            batch = []
    result.new_versions += _insert(volume.pk, batch, seq)
    changed.extend(version_id for version_id, _ in current.values())  # not in this point any more
    for start in range(0, len(changed), BATCH):
        result.closed_versions += CatalogFile.objects.filter(pk__in=changed[start : start + BATCH]).update(
            last_seq=head
        )


def _current_versions(volume: CatalogVolume) -> dict[str, tuple[int, Fingerprint]]:
    rows = CatalogFile.objects.filter(volume=volume, last_seq__isnull=True).values_list(
        "pk", "path", "is_dir", "size", "modified", "owner"
    )
    return {path: (pk, (is_dir, size, modified, owner)) for pk, path, is_dir, size, modified, owner in rows.iterator()}


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _insert(volume_id: int, entries: list[CatalogEntry], seq: int) -> int:
    if not entries:
        return 0
    if connection.vendor == "postgresql":
        _copy(volume_id, entries, seq)
    else:
        CatalogFile.objects.bulk_create(
            (
                CatalogFile(
                    volume_id=volume_id,
                    path=e.path,
                    name=_name(e.path),
                    is_dir=e.is_dir,
                    size=e.size,
                    modified=e.modified,
                    owner=e.owner[:200],
                    first_seq=seq,
                )
                for e in entries
            ),
            batch_size=500,
        )
    return len(entries)


def _copy(volume_id: int, entries: list[CatalogEntry], seq: int) -> None:
    """COPY the rows in: several times faster than INSERT for a volume's first point."""
    table = CatalogFile._meta.db_table
    columns = "volume_id, path, name, is_dir, size, modified, owner, first_seq"
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, under Django's wrapper
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in _rows(volume_id, entries, seq):
                copy.write_row(row)


def _rows(volume_id: int, entries: list[CatalogEntry], seq: int) -> Iterator[tuple[object, ...]]:
    for e in entries:
        yield (volume_id, e.path, _name(e.path), e.is_dir, e.size, e.modified, e.owner[:200], seq)


def newest_catalogued_seq(vm_id: int) -> int | None:
    return CatalogPoint.objects.filter(vm_id=vm_id, seq__isnull=False).aggregate(newest=Max("seq"))["newest"]
