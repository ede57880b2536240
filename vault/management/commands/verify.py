"""`manage.py verify [VM] [--wait]`: re-read and re-hash recovery points."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.cli import wait_for_job
from vault.actions import VaultActionError
from vault.jobs import enqueue_verify
from vault.models import LOCAL_TIER


class Command(BaseCommand):
    help = "Verify recovery points in the local store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", nargs="?", help="only this VM (name)")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        vm_name = options["vm"]
        try:
            run = enqueue_verify(LOCAL_TIER, vm_name=vm_name, target_label=vm_name or "all VMs")
        except VaultActionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Verifying {len(run.params['point_ids'])} point(s) (job {run.pk}).")
        if options["wait"]:
            wait_for_job(self.stdout, run)
