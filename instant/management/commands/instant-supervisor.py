"""`manage.py instant-supervisor`: keep instant recoveries' data path as the database wants it
(instant.supervisor.reconcile every 2 s) until SIGTERM or SIGINT, then stop the servers (which
unmount) and ganesha. `make run` starts it."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from instant.supervisor import Supervisor

log = logging.getLogger("instant.supervisor")


class Command(BaseCommand):
    help = "Serve instant recoveries' points over NFS as the database says, until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, default=2.0, help="seconds between passes")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        supervisor = Supervisor()
        try:
            while not stopping.is_set():
                close_old_connections()
                try:
                    supervisor.reconcile()
                except Exception:  # a pass that failed (database restarting, say) is retried
                    log.exception("instant supervisor pass failed")
                stopping.wait(options["every"])
        finally:
            supervisor.shutdown()
