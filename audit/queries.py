"""Read side of the audit trail: filters shared by the page, the CSV export and `manage.py audit`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.models import AuditEntry

PAGE_SIZE = 100

# Offered in the action filter; any other prefix may be typed.
ACTION_PREFIXES = [
    ("auth", "logins and logouts"),
    ("account", "accounts and roles"),
    ("restore", "restores"),
    ("point", "recovery points: locks, deletions, retention"),
    ("group", "protection groups"),
    ("protection", "protection: groups, members, backups"),
    ("vault", "vault settings and keys"),
    ("vcenter", "vCenter connections"),
    ("vm", "VM marks"),
    ("grant", "restore permissions"),
    ("job", "jobs"),
]

CSV_HEADER = ["Time", "Actor", "Action", "Target type", "Target id", "Target", "Details"]


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: dt.date | dt.datetime | None = None
    until: dt.date | None = None  # inclusive


def _start_of(day: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(day, dt.datetime):
        return day if timezone.is_aware(day) else timezone.make_aware(day)
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def action_q(prefix: str) -> Q:
    """The action starts with `prefix`, or one of its dotted parts does: "group" finds
    "protection.group_update", "restore" finds "restore.files" and "restore.vm"."""
    prefix = prefix.strip()
    return Q(action__startswith=prefix) | Q(action__contains="." + prefix)


def entries(filters: AuditFilters) -> QuerySet[AuditEntry]:
    """Matching entries, newest first."""
    rows = AuditEntry.objects.all()
    if filters.actor.strip():
        rows = rows.filter(actor_name__icontains=filters.actor.strip())
    if filters.action.strip():
        rows = rows.filter(action_q(filters.action))
    if filters.target.strip():
        text = filters.target.strip()
        rows = rows.filter(Q(target_label__icontains=text) | Q(target_id=text))
    if filters.since:
        rows = rows.filter(created__gte=_start_of(filters.since))
    if filters.until:
        rows = rows.filter(created__lt=_start_of(filters.until + dt.timedelta(days=1)))
    return rows.order_by("-created", "-id")


# Keyset paging: a page is "the next PAGE_SIZE entries older than (created, id)", so paging
# through millions of rows costs the same on every page and rows written meanwhile never shift it.

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def cursor_of(row: AuditEntry) -> str:
    delta = row.created - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{row.pk}"


def parse_cursor(text: str | None) -> tuple[dt.datetime, int] | None:
    try:
        micros, pk = (text or "").split(".")
        return _EPOCH + dt.timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError):
        return None


def page(rows: QuerySet[AuditEntry], before: str | None, size: int = PAGE_SIZE) -> tuple[list[AuditEntry], str]:
    """One page of `rows` (newest first) older than the cursor, and the cursor of the next page ("" at the end)."""
    cursor = parse_cursor(before)
    if cursor:
        created, pk = cursor
        rows = rows.filter(Q(created__lt=created) | Q(created=created, pk__lt=pk))
    found = list(rows[: size + 1])
    more = len(found) > size
    found = found[:size]
    return found, cursor_of(found[-1]) if more and found else ""


# Presentation ---------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


# Actions whose details are {field: [before, after]}.
CHANGE_ACTIONS = {"vcenter.update", "protection.group_update"}


def _is_pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def detail_items(action: str, details: Any) -> list[tuple[str, str]]:
    """The details as (key, readable value) pairs; a change reads "before → after". Plain text:
    the template escapes it."""
    if not isinstance(details, dict):
        return [] if details in (None, "", []) else [("", _text(details))]
    items = []
    for key, value in details.items():
        if action in CHANGE_ACTIONS and _is_pair(value):
            items.append((str(key), f"{_text(value[0])} → {_text(value[1])}"))
        elif key == "changes" and isinstance(value, dict) and all(_is_pair(v) for v in value.values()):
            items.extend((str(k), f"{_text(v[0])} → {_text(v[1])}") for k, v in value.items())
        else:
            items.append((str(key), _text(value)))
    return items


def csv_rows(rows: QuerySet[AuditEntry]) -> Iterator[list[Any]]:
    """Every row, read in chunks so an export of millions of rows stays small in memory."""
    for row in rows.iterator(chunk_size=2000):
        yield [
            row.created,
            row.actor_name,
            row.action,
            row.target_type,
            row.target_id,
            row.target_label,
            json.dumps(row.details, ensure_ascii=False, sort_keys=True, default=str),
        ]
