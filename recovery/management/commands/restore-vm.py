"""`manage.py restore-vm VM [--point ID] (--name NEW --folder PATH --datastore NAME --pool NAME [--host NAME]
| --overwrite) [--wait]`: restore a whole VM as a new VM, or over the original (powered off first)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import Datastore, Folder, Host, ResourcePool
from jobs.cli import wait_for_job
from recovery import actions
from recovery.forms import RestoreVmForm
from recovery.management.commands._points import CLI_ACTOR, find_point


class Command(BaseCommand):
    help = "Restore a whole VM from a recovery point."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", help="VM name")
        parser.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        parser.add_argument("--name", help="name of the new VM")
        parser.add_argument("--folder", help="folder path of the new VM, e.g. DC/Restored")
        parser.add_argument("--datastore", help="datastore name for the new VM's disks")
        parser.add_argument("--pool", help="resource pool name")
        parser.add_argument("--host", help="host name (optional)")
        parser.add_argument("--overwrite", action="store_true", help="restore over the original VM")
        parser.add_argument("--yes", action="store_true", help="with --overwrite: do not ask")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        point = find_point(options["vm"], options["point"])
        vm = point.vm
        if options["overwrite"]:
            if not options["yes"]:
                answer = input(f"{vm.name} will be powered off and its disks overwritten. Type its name: ")
                if answer.strip() != vm.name:
                    raise CommandError("Not confirmed; nothing was changed.")
            data = {"mode": "overwrite", "confirm": vm.name}
        else:
            place = {"vcenter_id": vm.vcenter_id, "datacenter_id": vm.datacenter_id}

            def pick(model, field: str, value: str | None) -> Any:
                if not value:
                    return None
                found = list(model.objects.filter(**place, **{field: value})[:2])
                if len(found) != 1:
                    raise CommandError(f"{value!r}: {'no' if not found else 'more than one'} {model.__name__}.")
                return found[0].pk

            data = {
                "mode": "new",
                "name": options["name"] or "",
                "folder": pick(Folder, "path", options["folder"]),
                "pool": pick(ResourcePool, "name", options["pool"]),
                "datastore": pick(Datastore, "name", options["datastore"]),
                "host": pick(Host, "name", options["host"]),
            }
        form = RestoreVmForm({k: v for k, v in data.items() if v is not None}, point=point)
        if not form.is_valid():
            problems = [
                f"{field}: {' '.join(str(message) for message in errors)}" for field, errors in form.errors.items()
            ]
            raise CommandError("; ".join(problems))
        run = actions.start_vm_restore(CLI_ACTOR, point, form.target())
        self.stdout.write(f"{run.title}: job {run.pk}.")
        if options["wait"]:
            wait_for_job(self.stdout, run)
