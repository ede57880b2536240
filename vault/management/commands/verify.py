"""`manage.py verify [VM] [--wait]`: re-read and re-hash recovery points."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import runner
from jobs.cli import wait_for_job
from vault.jobs import VERIFY_KIND
from vault.models import LOCAL_TIER, RecoveryPoint


class Command(BaseCommand):
    help = "Verify recovery points in the local store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", nargs="?", help="only this VM (name)")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        points = RecoveryPoint.objects.in_tier(LOCAL_TIER)
        if options["vm"]:
            points = points.filter(vm__name=options["vm"])
        ids = [str(pk) for pk in points.values_list("pk", flat=True)]
        if not ids:
            raise CommandError("No recovery point to verify.")
        run = runner.enqueue(VERIFY_KIND, params={"point_ids": ids}, target_label=options["vm"] or "all VMs")
        self.stdout.write(f"Verifying {len(ids)} point(s) (job {run.pk}).")
        if options["wait"]:
            wait_for_job(self.stdout, run)
