"""Search the catalog by name, glob or path fragment across every point of the VMs a user may restore
from; "other versions" of one path. Only the database is read: no point is opened.

What a query means:
- no `/`: a file or folder name. With `*`, `?` or `[...]` it is a shell glob over the whole name
  (`report*` is a prefix, `*.docx` an extension), otherwise any part of the name.
- with `/`: a path. A glob matches the path's end (`alice/*.txt`), or the whole path when it starts
  with `/`; otherwise any part of the path.
Matching ignores case. On PostgreSQL, prefixes use the lower(name) text_pattern_ops index and the
rest the pg_trgm indexes (migration 0004)."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Lower
from django.db.models.lookups import Lookup

from inventory.models import VirtualMachine
from recovery import access
from recovery.models import CatalogPath, CatalogPoint, CatalogVersion, CatalogVolume
from vault.models import RecoveryPoint

LIMIT = 200
GLOB_CHARS = "*?["


class Like(Lookup):
    """`lhs LIKE rhs` with backslash as the escape character, on every database."""

    lookup_name = "catalog_like"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", (*lhs_params, *rhs_params)


class Regex(Lookup):
    lookup_name = "catalog_regex"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        operator = "~" if connection.vendor == "postgresql" else "REGEXP"
        return f"{lhs} {operator} {rhs}", (*lhs_params, *rhs_params)


@dataclass
class Version:
    """One version of a hit and the points (visible to the user) that hold it, newest first."""

    is_dir: bool
    size: int
    modified: dt.datetime | None
    owner: str
    points: list[RecoveryPoint] = field(default_factory=list)

    @property
    def newest(self) -> RecoveryPoint:
        return self.points[0]

    @property
    def oldest(self) -> RecoveryPoint:
        return self.points[-1]


@dataclass
class Hit:
    vm: VirtualMachine
    volume: CatalogVolume
    path: str
    versions: list[Version]  # newest first

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0] or "/"

    @property
    def is_dir(self) -> bool:
        return self.versions[0].is_dir


def hit_as_dict(hit: Hit) -> dict[str, Any]:
    """A hit as the API and `manage.py search-files --json` give it (`item` is what restore-files --path takes)."""
    return {
        "vm": hit.vm.pk,
        "vm_name": hit.vm.name,
        "disk": hit.volume.disk_key,
        "volume": hit.volume.volume_index,
        "volume_label": hit.volume.label,
        "path": hit.path,
        "name": hit.name,
        "is_dir": hit.is_dir,
        "item": f"{hit.volume.disk_key}:{hit.volume.volume_index}:{hit.path}",
        "versions": [
            {
                "is_dir": version.is_dir,
                "size": version.size,
                "modified": version.modified,
                "owner": version.owner,
                "points": [{"id": point.pk, "created": point.created} for point in version.points],
            }
            for version in hit.versions
        ],
    }


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    truncated: bool  # more matched than the limit: the pattern should be narrowed


def matcher(query: str) -> Q:
    """The Q over CatalogPath a query means (see the module docstring)."""
    text = query.strip().lower()
    if not text:
        raise ValueError("Type part of a name, a pattern like *.docx, or part of a path.")
    column = Lower("path") if "/" in text else Lower("name")
    if not any(char in text for char in GLOB_CHARS):
        return Q(Like(column, Value(f"%{_escape_like(text)}%")))
    if "/" in text and not text.startswith("/"):
        text = "*/" + text
    if "[" in text:
        return Q(Regex(column, Value(_glob_regex(text))))
    return Q(Like(column, Value(_glob_like(text))))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob_like(pattern: str) -> str:
    return "".join({"*": "%", "?": "_"}.get(char, _escape_like(char)) for char in pattern)


def _glob_regex(pattern: str) -> str:
    """A shell glob as an anchored regular expression both PostgreSQL and Python read alike."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif end != -1:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + re.sub(r"([\\\]\[^])", r"\\\1", body) + "]")
            i = end
        else:
            out.append(re.escape(char) if not char.isalnum() else char)
        i += 1
    return "".join(out) + "$"


def not_searched(user: Any, vm: VirtualMachine | None = None) -> dict[str, int]:
    """How many of the points `user` may see are not searched: not catalogued yet (a job is on it),
    or not catalogued at all (held only in the vault, unreadable)."""
    points = access.visible_points(user)
    if vm is not None:
        points = points.filter(vm=vm)
    return {
        "pending": points.filter(catalog__isnull=True).count(),
        "unavailable": points.filter(catalog__status=CatalogPoint.Status.UNAVAILABLE).count(),
    }


def searchable_vms(user: Any, vm: VirtualMachine | None = None) -> QuerySet[VirtualMachine]:
    vms = access.visible_vms(user)
    return vms.filter(pk=vm.pk) if vm is not None else vms


def search(user: Any, query: str, *, vm: VirtualMachine | None = None, limit: int = LIMIT) -> SearchResult:
    """Hits for `query` in the VMs `user` may restore from (or in `vm`, if visible), with their versions.

    Raises ValueError for an empty query."""
    paths = CatalogPath.objects.filter(matcher(query))
    if vm is not None or not access.sees_every_vm(user):
        paths = paths.filter(volume__vm_id__in=searchable_vms(user, vm).values("pk"))
    # No ORDER BY: the first rows that match come back as soon as they are found, whatever the size.
    found = list(paths.values_list("pk", flat=True)[: limit + 1])
    hits = _hits(user, found[:limit])
    hits.sort(key=lambda hit: (hit.name.lower(), hit.path, hit.vm.name))
    return SearchResult(query=query, hits=hits, truncated=len(found) > limit)


def _hits(user: Any, path_ids: list[int]) -> list[Hit]:
    if not path_ids:
        return []
    paths = list(CatalogPath.objects.filter(pk__in=path_ids).select_related("volume__vm"))
    vm_of = {path.pk: path.volume.vm_id for path in paths}
    points = _points_by_seq(user, set(vm_of.values()))
    grouped: dict[int, list[Version]] = defaultdict(list)
    for row in CatalogVersion.objects.filter(path_id__in=path_ids).order_by("-first_seq"):
        holding = [p for seq, p in points[vm_of[row.path_id]] if _holds(row, seq)]
        if holding:
            grouped[row.path_id].append(Version(row.is_dir, row.size, row.modified, row.owner, holding))
    return [
        Hit(vm=path.volume.vm, volume=path.volume, path=path.path, versions=grouped[path.pk])
        for path in paths
        if grouped.get(path.pk)
    ]


def _holds(version: CatalogVersion, seq: int) -> bool:
    return version.first_seq <= seq and (version.last_seq is None or seq <= version.last_seq)


def _points_by_seq(user: Any, vm_ids: set[int]) -> dict[int, list[tuple[int, RecoveryPoint]]]:
    """The catalogued points of these VMs that `user` may see, newest first, with their sequence numbers."""
    visible = access.visible_points(user)  # point by point: a group grant covers the points taken in that group
    rows = (
        CatalogPoint.objects.filter(vm_id__in=vm_ids, seq__isnull=False, point__in=visible.values("pk"))
        .select_related("point")
        .order_by("-seq")
    )
    points: dict[int, list[tuple[int, RecoveryPoint]]] = defaultdict(list)
    for row in rows:
        assert row.seq is not None  # filtered above
        points[row.vm_id].append((row.seq, row.point))
    return points


@dataclass
class PointVersion:
    """A point of the VM and the version of one path it holds (None: not in that point), or why unknown."""

    point: RecoveryPoint
    version: CatalogVersion | None
    note: str = ""


def other_versions(user: Any, point: RecoveryPoint, disk_key: int, volume_index: int, path: str) -> list[PointVersion]:
    """The path in every point of the point's VM that `user` may see (newest first), from the catalog."""
    catalogued = {
        row.point_id: row for row in CatalogPoint.objects.filter(vm_id=point.vm_id).only("point_id", "seq", "note")
    }
    versions = list(
        CatalogVersion.objects.filter(
            path__volume__vm_id=point.vm_id,
            path__volume__disk_key=disk_key,
            path__volume__volume_index=volume_index,
            path__path=path,
        )
    )
    rows = []
    for other in access.visible_points(user).filter(vm_id=point.vm_id).order_by("-created"):
        entry = catalogued.get(other.pk)
        if entry is None:
            rows.append(PointVersion(other, None, "not catalogued yet"))
        elif entry.seq is None:
            rows.append(PointVersion(other, None, entry.note or "not catalogued"))
        else:
            seq = entry.seq
            held = next((v for v in versions if _holds(v, seq)), None)
            rows.append(PointVersion(other, held, "" if held else "not in this point"))
    return rows
