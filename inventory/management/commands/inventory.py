"""`manage.py inventory sync [NAME] [--wait]` and `manage.py inventory watch`."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.actions import enqueue_sync
from inventory.models import VCenter
from inventory.watcher import watch_all
from jobs.cli import wait_for_job
from lib.cli import shown


class Command(BaseCommand):
    help = "Synchronise the inventory, once or continuously."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sync = sub.add_parser("sync", help="queue a full sync of one or all vCenters")
        sync.add_argument("name", nargs="?")
        sync.add_argument("--wait", action="store_true", help="wait until the sync has finished")
        sub.add_parser("watch", help="apply vCenter changes live until stopped (started by make run)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "watch":
            self.watch()
            return
        vcenters = VCenter.objects.all()
        if options["name"]:
            vcenters = vcenters.filter(name=options["name"])
            if not vcenters:
                raise CommandError(f"No vCenter connection named {options['name']!r}.")
        if not vcenters:
            raise CommandError("No vCenter connection configured.")
        runs = [enqueue_sync(vc) for vc in vcenters]
        for run in runs:
            self.stdout.write(f"{shown(run.title)} of {shown(run.target_label)}: {run.status} (job {run.pk})")
        if options["wait"]:
            for run in runs:
                wait_for_job(self.stdout, run)
                self.stdout.write(f"{shown(run.target_label)}: {shown(run.result)}")

    def watch(self) -> None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("Watching vCenter inventories for changes (Ctrl-C stops).")
        watch_all(stop)
