"""`manage.py instant-recovery`:

- `start VM [--point ID] [--name NEW] [--host PATH] [--connect-network] [--wait]`: run the VM from its
  point (the newest by default) as NEW (default VM-instant) on the host (a path such as
  DC/host/Cluster/esx01 or a unique name; default the VM's own), its network adapters disconnected
  unless --connect-network;
- `list [--json]`;
- `migrate ID --datastore PATH [--wait]`: move its disks to a production datastore and finish;
- `stop ID [--wait]`: power it off and remove it (nothing is left behind).

`make run` must be running (or `manage.py instant-supervisor`): it serves the point over NFS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from instant import actions
from instant.models import InstantRecovery
from inventory.placement import PlacementError, candidates, resolve
from jobs.cli import wait_for_job
from jobs.models import JobRun
from lib.cli import print_rows, shown
from recovery.management.commands._points import CLI_ACTOR, find_point


class Command(BaseCommand):
    help = "Run a VM straight from a recovery point, list those running, migrate or stop one."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="start a VM from its recovery point")
        start.add_argument("vm", help="VM name")
        start.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        start.add_argument(
            "--name",
            default="",
            help="name of the new VM (default: VM-instant; the VM's own when it is gone from vCenter)",
        )
        start.add_argument("--host", help="host: path (DC/host/Cluster/esx01) or unique name (default: the VM's)")
        start.add_argument("--connect-network", action="store_true", help="connect its network adapters at power-on")
        start.add_argument("--wait", action="store_true")
        listing = sub.add_parser("list", help="instant recoveries, newest first")
        listing.add_argument("--json", action="store_true")
        migrate = sub.add_parser("migrate", help="move the VM's disks to a datastore and finish")
        migrate.add_argument("id", type=int)
        migrate.add_argument("--datastore", required=True, help="path (DC/datastore/ds1) or unique name")
        migrate.add_argument("--wait", action="store_true")
        stop = sub.add_parser("stop", help="power the VM off and remove it and its datastore")
        stop.add_argument("id", type=int)
        stop.add_argument("--wait", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = getattr(self, f"_{options['action']}")(options)
        except (actions.InstantRefused, PlacementError) as exc:
            raise CommandError(str(exc)) from None
        if run is None:
            return
        self.stdout.write(f"{shown(run.title)}: job {run.pk}.")
        if options["wait"]:
            wait_for_job(self.stdout, run)

    def _start(self, options: dict[str, Any]) -> JobRun | None:
        point = find_point(options["vm"], options["point"])
        host = resolve("host", options["host"], candidates("host", point.vm)) if options["host"] else None
        recovery = actions.start_instant_recovery(
            CLI_ACTOR, point, name=options["name"], host=host, connect_network=options["connect_network"]
        )
        self.stdout.write(f"Instant recovery {recovery.pk}: {shown(recovery.vm_name)} on {shown(recovery.host_name)}.")
        return recovery.job

    def _list(self, options: dict[str, Any]) -> None:
        rows = [_row(r) for r in InstantRecovery.objects.select_related("point", "source_vm")]
        print_rows(
            self.stdout,
            rows,
            as_json=options["json"],
            headers=["ID", "VM", "FROM", "POINT", "HOST", "STATE", "STARTED", "READ", "OVERLAY"],
            cells=lambda r: [
                r["id"],
                r["vm"],
                r["source_vm"],
                r["point_created"][:16],
                r["host"],
                r["state"],
                r["started"][:19],
                r["bytes_read"],
                r["overlay_bytes"],
            ],  # fmt: skip
        )

    def _migrate(self, options: dict[str, Any]) -> JobRun:
        recovery = _recovery(options["id"])
        if recovery.source_vm is None:
            raise CommandError("The recovered VM's original is no longer in the inventory to place it by.")
        datastore = resolve("datastore", options["datastore"], candidates("datastore", recovery.source_vm))
        return actions.migrate(CLI_ACTOR, recovery, datastore)

    def _stop(self, options: dict[str, Any]) -> JobRun:
        return actions.stop(CLI_ACTOR, _recovery(options["id"]))


def _recovery(pk: int) -> InstantRecovery:
    recovery = InstantRecovery.objects.select_related("source_vm").filter(pk=pk).first()
    if recovery is None:
        raise CommandError(f"There is no instant recovery {pk}.")
    return recovery


def _row(r: InstantRecovery) -> dict[str, Any]:
    return {
        "id": r.pk,
        "vm": r.vm_name,
        "source_vm": r.source_vm.name if r.source_vm else "",
        "point": str(r.point_id) if r.point_id else None,
        "point_created": r.point_created.isoformat() if r.point_created else "",
        "host": r.host_name,
        "state": r.state,
        "error": r.error,
        "datastore": r.datastore_name or "",
        "started": r.started.isoformat(),
        "finished": r.finished.isoformat() if r.finished else None,
        "bytes_read": r.bytes_read,
        "overlay_bytes": r.overlay_bytes,
    }
