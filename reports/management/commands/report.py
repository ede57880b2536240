"""`manage.py report protection [--csv]`: the protection status of every VM."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from lib.cli import print_table
from lib.csvexport import csv_lines
from reports import queries


class Command(BaseCommand):
    help = (
        "Reports: `report protection` lists every VM with its group, newest points, RPO, last backup "
        "and when a restore test last proved it recoverable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="report", required=True)
        protection = sub.add_parser("protection", help="per-VM protection status (same columns as the CSV download)")
        protection.add_argument("--csv", action="store_true", help="CSV instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['report']}")(options)

    def do_protection(self, options: dict[str, Any]) -> None:
        report = queries.protection_report()
        if options["csv"]:
            for line in csv_lines(queries.csv_header(), queries.csv_rows(report), bom=False):
                self.stdout.write(line, ending="")
            return
        totals = report.totals
        self.stdout.write(
            f"Generated {timezone.localtime(report.generated):%Y-%m-%d %H:%M:%S %Z}: {totals.protected} protected, "
            f"{totals.unprotected} unprotected, {totals.do_not_protect} do not protect, "
            f"{totals.breached} RPO breached, {totals.not_off_site} not off-site, "
            f"{totals.removed} removed with points, {totals.proven} proven recoverable, "
            f"{totals.proof_overdue} overdue for a restore test"
        )
        rows = [[_cell(c) for c in row] for row in queries.csv_rows(report)]
        print_table(self.stdout, [h.upper() for h in queries.CSV_HEADER], rows)


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return f"{timezone.localtime(value):%Y-%m-%d %H:%M}"
    return "-" if value is None or value == "" else str(value)
