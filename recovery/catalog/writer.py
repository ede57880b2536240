"""Write a point's files into the catalog: compare each entry with the VM's current version of its
path, keep what is unchanged, close what changed or vanished, add what is new.

The writer takes `VolumeListing`s whose entries may come from any iterator, so the real walk of a file
system and a benchmark's synthetic listing go through the same code. A path is stored once
(`CatalogPath`, where the search indexes are); each change adds a narrow `CatalogVersion` row, written
in batches (COPY on PostgreSQL, bulk INSERT elsewhere). An unchanged point writes one row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from recovery.models import CatalogPath, CatalogPoint, CatalogVersion, CatalogVm, CatalogVolume
from vault.models import RecoveryPoint

BATCH = 5000
# What makes two listings of a path the same version.
Fingerprint = tuple[bool, int, dt.datetime | None, str]
# v.volume_id with last_seq NULL is the partial index catalog_version_current; the condition on
# p.volume_id too keeps PostgreSQL from hashing every path of every VM to join (30 ms, not 350 ms, at
# a million paths).
CURRENT_VERSIONS = (
    "SELECT v.id, v.path_id, p.path, v.is_dir, v.size, v.modified, v.owner FROM recovery_catalogversion v "
    "JOIN recovery_catalogpath p ON p.id = v.path_id WHERE v.volume_id = %(volume)s AND p.volume_id = %(volume)s "
    "AND v.last_seq IS NULL"
)
KNOWN_PATHS = "SELECT id, path FROM recovery_catalogpath WHERE volume_id = %s AND path = ANY(%s)"
NEW_PATHS = (
    "INSERT INTO recovery_catalogpath (volume_id, path, name) SELECT %s, p, n FROM unnest(%s::text[], %s::text[]) "
    "AS t(p, n) RETURNING id, path"
)
CLOSE = "UPDATE recovery_catalogversion SET last_seq = %s WHERE id = ANY(%s)"


class OutOfOrder(Exception):
    """The point is older than the VM's newest catalogued point: the VM's catalog must be rebuilt."""


class CatalogEntry(NamedTuple):
    """A file or folder as a listing gives it. A named tuple: a volume yields tens of thousands."""

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


def catalogue_point(
    point: RecoveryPoint, listings: Iterable[VolumeListing], *, problems: list[str] | None = None
) -> CatalogResult:
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
        # Volumes of the VM this point does not have (a disk removed, a volume that no longer opens).
        gone = list(CatalogVolume.objects.filter(vm_id=point.vm_id).exclude(pk__in=seen).values_list("pk", flat=True))
        if head is not None and gone:
            current = CatalogVersion.objects.filter(volume_id__in=gone, last_seq__isnull=True)  # the partial index
            result.closed_versions += current.update(last_seq=head)
        entry.seq, entry.status, entry.catalogued = state.last_seq, CatalogPoint.Status.CATALOGUED, timezone.now()
        entry.entries, entry.new_versions = result.entries, result.new_versions
        # Read after the listings are consumed: a lazy walk appends what it could not read as it goes.
        entry.note = "; ".join([*(problems or []), *result.notes])[:500]
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
    changed: list[int] = []  # versions this point closes
    batch = _Batch(volume.pk, seq)
    listed: set[str] = set()
    for entry in entries:
        if entry.path in listed:  # one version per path and point, whatever the listing repeats
            continue
        listed.add(entry.path)
        result.entries += 1
        known = current.pop(entry.path, None)
        if known is None:
            batch.add(entry, None)
        elif known[2] != entry.fingerprint:
            changed.append(known[0])
            batch.add(entry, known[1])
        if len(batch) >= BATCH:
            result.new_versions += batch.flush()
    result.new_versions += batch.flush()
    changed.extend(version_id for version_id, _path_id, _ in current.values())  # not in this point any more
    result.closed_versions += _close(changed, head)


class _Batch:
    """New versions waiting to be written; entries whose path is not known yet get one first."""

    def __init__(self, volume_id: int, seq: int) -> None:
        self.volume_id, self.seq = volume_id, seq
        self.entries: list[tuple[CatalogEntry, int | None]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: CatalogEntry, path_id: int | None) -> None:
        self.entries.append((entry, path_id))

    def flush(self) -> int:
        if not self.entries:
            return 0
        unknown = [entry.path for entry, path_id in self.entries if path_id is None]
        ids = _path_ids(self.volume_id, unknown) if unknown else {}
        rows = [(path_id or ids[entry.path], entry) for entry, path_id in self.entries]
        _insert_versions(self.volume_id, rows, self.seq)
        self.entries = []
        return len(rows)


def _current_versions(volume: CatalogVolume) -> dict[str, tuple[int, int, Fingerprint]]:
    """The volume's current version of each path: (version id, path id, fingerprint). Plain SQL: this
    read is most of the cost of an unchanged point, and the ORM's per-row work would triple it. On
    PostgreSQL the rows come in binary form (Django's cursors ask for text), which parses in a third of
    the time."""
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as raw:
            raw.execute(CURRENT_VERSIONS.replace("%(volume)s", "%s"), [volume.pk, volume.pk], binary=True)
            binary_rows = raw.fetchall()
        return {path: (v, p, (d, size, m, owner)) for v, p, path, d, size, m, owner in binary_rows}
    with connection.cursor() as cursor:
        cursor.execute(CURRENT_VERSIONS, {"volume": volume.pk})
        rows = cursor.fetchall()
    # SQLite hands back 0/1 for booleans, and maybe naive times.
    return {path: (v, p, (bool(d), size, _aware(m), owner)) for v, p, path, d, size, m, owner in rows}


def _aware(value: dt.datetime | str | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _path_ids(volume_id: int, paths: list[str]) -> dict[str, int]:
    """Ids of these paths of the volume, adding the ones not stored yet (a file that was deleted and
    came back keeps its path row)."""
    if connection.vendor != "postgresql":
        known = dict(CatalogPath.objects.filter(volume_id=volume_id, path__in=paths).values_list("path", "pk"))
        rows = [CatalogPath(volume_id=volume_id, path=p, name=_name(p)) for p in paths if p not in known]
        for row in CatalogPath.objects.bulk_create(rows, batch_size=500):
            known[row.path] = row.pk
        return known
    with connection.cursor() as cursor:
        cursor.execute(KNOWN_PATHS, [volume_id, paths])
        known = {path: path_id for path_id, path in cursor.fetchall()}
        missing: list[str] = [p for p in paths if p not in known]
        if missing:
            cursor.execute(NEW_PATHS, [volume_id, missing, [_name(p) for p in missing]])
            known.update({path: path_id for path_id, path in cursor.fetchall()})
    return known


def _insert_versions(volume_id: int, rows: list[tuple[int, CatalogEntry]], seq: int) -> None:
    if connection.vendor != "postgresql":
        CatalogVersion.objects.bulk_create(
            (
                CatalogVersion(
                    path_id=path_id,
                    volume_id=volume_id,
                    is_dir=e.is_dir,
                    size=e.size,
                    modified=e.modified,
                    owner=e.owner[:200],
                    first_seq=seq,
                )
                for path_id, e in rows
            ),
            batch_size=500,
        )
        return
    # COPY in its text format, the lines made here: several times faster than INSERT, and than
    # letting psycopg adapt each value of each row.
    columns = "volume_id, path_id, is_dir, size, modified, owner, first_seq"
    head, tail = f"{volume_id}\t", f"\t{seq}\n"
    lines = [
        f"{head}{path_id}\t{'t' if e.is_dir else 'f'}\t{e.size}\t{_copy_time(e.modified)}\t{_copy_text(e.owner)}{tail}"
        for path_id, e in rows
    ]
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, under Django's wrapper
        with raw.copy(f"COPY recovery_catalogversion ({columns}) FROM STDIN") as copy:
            copy.write("".join(lines))


def _copy_time(value: dt.datetime | None) -> str:
    return "\\N" if value is None else value.isoformat()


def _copy_text(value: str) -> str:
    """A value in COPY's text format (cut to the column's 200 characters): backslash, tab, newline and
    carriage return escaped."""
    value = value[:200]
    if any(char in value for char in "\\\t\n\r"):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _close(version_ids: list[int], head: int | None) -> int:
    closed = 0
    for start in range(0, len(version_ids), BATCH):
        chunk = version_ids[start : start + BATCH]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(CLOSE, [head, chunk])
                closed += cursor.rowcount
        else:
            closed += CatalogVersion.objects.filter(pk__in=chunk).update(last_seq=head)
    return closed
