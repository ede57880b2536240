"""`manage.py audit [--since DATE] [--action PREFIX] [--csv]`: the audit log from a shell."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import queries
from lib.cli import shown
from lib.csvexport import csv_lines


def _since(value: str) -> dt.date | dt.datetime:
    parsed = parse_datetime(value) or parse_date(value)
    if parsed is None:
        raise CommandError(f"--since {value!r}: give YYYY-MM-DD or an ISO date-time.")
    return parsed


class Command(BaseCommand):
    help = "Print the audit log, newest first (every matching entry)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="from this day (YYYY-MM-DD, local time) or ISO date-time on")
        parser.add_argument("--action", help='action prefix, e.g. "restore", "auth", "group", "vault"')
        parser.add_argument("--actor", help="actor name contains")
        parser.add_argument("--target", help="target contains")
        parser.add_argument("--csv", action="store_true", help="CSV (same columns as the page's export)")

    def handle(self, *args: Any, **options: Any) -> None:
        filters = queries.AuditFilters(
            actor=options["actor"] or "",
            action=options["action"] or "",
            target=options["target"] or "",
            since=_since(options["since"]) if options["since"] else None,
        )
        rows = queries.entries(filters)
        if options["csv"]:
            header = [*queries.CSV_HEADER]
            header[0] = f"Time ({timezone.get_current_timezone_name()})"
            # No byte-order mark on a terminal or pipe; the page's download has one for Excel.
            for line in csv_lines(header, queries.csv_rows(rows), bom=False):
                self.stdout.write(line, ending="")
            return
        for row in rows.iterator(chunk_size=2000):
            details = json.dumps(row.details, ensure_ascii=False, sort_keys=True, default=str) if row.details else ""
            when = timezone.localtime(row.created).strftime("%Y-%m-%d %H:%M:%S")
            target = shown(row.target_label or "-")
            line = f"{when}  {shown(row.actor_name):<16} {row.action:<28} {target}  {shown(details)}"
            self.stdout.write(line.rstrip())
