"""`manage.py catalog backfill [--wait]` queues the job that catalogues every recovery point not yet in
the file catalog (workers also queue it when they start); `manage.py catalog status [--json]` says
how much is catalogued."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from jobs.cli import wait_for_job
from jobs.models import JobRun
from jobs.runner import enqueue
from lib.cli import print_json, print_table, shown
from recovery.catalog.jobs import BACKFILL_KIND
from recovery.models import CatalogPath, CatalogPoint, CatalogVersion
from vault.models import RecoveryPoint


class Command(BaseCommand):
    help = "Fill the file catalog for existing recovery points, or show what it holds."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        backfill = actions.add_parser("backfill", help="catalogue every point not yet catalogued")
        backfill.add_argument("--wait", action="store_true", help="wait for the job and print its log")
        status = actions.add_parser("status", help="points catalogued, pending, not catalogued; versions stored")
        status.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "backfill":
            self._backfill(wait=options["wait"])
        else:
            self._status(as_json=options["json"])

    def _backfill(self, *, wait: bool) -> None:
        run = JobRun.objects.filter(kind=BACKFILL_KIND, status__in=JobRun.ACTIVE).first()
        if run is None:
            run = enqueue(BACKFILL_KIND, title="Catalogue existing recovery points (command line)")
            self.stdout.write(f"{shown(run.title)}: job {run.pk}.")
        else:
            self.stdout.write(f"A backfill is already {run.status}: job {run.pk}.")
        if wait:
            wait_for_job(self.stdout, run)

    def _status(self, *, as_json: bool) -> None:
        counted = CatalogPoint.objects.values("status").annotate(n=Count("pk")).order_by()
        by_status = {row["status"]: row["n"] for row in counted}
        figures = {
            "points": RecoveryPoint.objects.count(),
            "catalogued": by_status.get(CatalogPoint.Status.CATALOGUED, 0),
            "not_catalogued": by_status.get(CatalogPoint.Status.UNAVAILABLE, 0),
            "pending": RecoveryPoint.objects.filter(catalog__isnull=True).count(),
            "paths": CatalogPath.objects.count(),
            "versions": CatalogVersion.objects.count(),
        }
        if as_json:
            print_json(self.stdout, figures)
        else:
            rows = [[key.replace("_", " "), value] for key, value in figures.items()]
            print_table(self.stdout, ["WHAT", "COUNT"], rows)
