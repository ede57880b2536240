"""`manage.py backup (VM... | --group NAME) [--wait]`: back up now, outside the schedule."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.cli import wait_for_job
from lib.cli import shown
from protection import actions
from protection.management.commands.group import _group, _vm


class Command(BaseCommand):
    help = "Back up VMs or a whole protection group now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vms", nargs="*", metavar="VM")
        parser.add_argument("--group")
        parser.add_argument("--wait", action="store_true", help="wait until the backups have finished")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["vms"]) == bool(options["group"]):
            raise CommandError("Name VMs or a --group (not both).")
        runs = []
        try:
            if options["group"]:
                runs = actions.backup_now(None, group=_group(options["group"]))
            else:
                for name in options["vms"]:
                    runs += actions.backup_now(None, vm=_vm(name))
        except actions.SelectionConflict as exc:
            raise CommandError(str(exc)) from None
        for run in runs:
            self.stdout.write(f"{shown(run.title)}: queued (job {run.pk})")
        if not runs:
            self.stdout.write("Nothing queued: the backups are already queued or running.")
        if options["wait"]:
            failed = []
            for run in runs:
                try:
                    done = wait_for_job(self.stdout, run)
                    self.stdout.write(f"{shown(done.target_label)}: recovery point {done.result.get('point')}")
                except CommandError as exc:
                    failed.append(str(exc))
            if failed:
                raise CommandError("\n".join(failed))
