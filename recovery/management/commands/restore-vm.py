"""`manage.py restore-vm VM [--point ID] (--name NEW --folder PATH --datastore NAME --pool NAME [--host NAME]
| --overwrite) [--wait]`: restore a whole VM as a new VM, or over the original (powered off first)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from inventory.models import Datastore, Folder, Host, ResourcePool, VirtualMachine
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
        data = (
            _overwrite_data(point.vm, confirmed=options["yes"])
            if options["overwrite"]
            else _new_vm_data(point.vm, options)
        )
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


def _overwrite_data(vm: VirtualMachine, *, confirmed: bool) -> dict[str, Any]:
    """The form's data for a restore over the VM, once its name is typed (unless --yes)."""
    if not confirmed:
        answer = input(f"{vm.name} will be powered off and its disks overwritten. Type its name: ")
        if answer.strip() != vm.name:
            raise CommandError("Not confirmed; nothing was changed.")
    return {"mode": "overwrite", "confirm": vm.name}


def _new_vm_data(vm: VirtualMachine, options: dict[str, Any]) -> dict[str, Any]:
    """The form's data for a new VM, its places named on the command line (in the VM's datacenter)."""
    place = {"vcenter_id": vm.vcenter_id, "datacenter_id": vm.datacenter_id}
    return {
        "mode": "new",
        "name": options["name"] or "",
        "folder": _pick(Folder.objects.filter(**place), "path", options["folder"]),
        "pool": _pick(ResourcePool.objects.filter(**place), "name", options["pool"]),
        "datastore": _pick(Datastore.objects.filter(**place), "name", options["datastore"]),
        "host": _pick(Host.objects.filter(**place), "name", options["host"]),
    }


def _pick(candidates: QuerySet[Any], field: str, value: str | None) -> int | None:
    """The primary key of the one candidate whose `field` is `value` (None when no value was given)."""
    if not value:
        return None
    found = list(candidates.filter(**{field: value})[:2])
    if len(found) != 1:
        raise CommandError(f"{value!r}: {'no' if not found else 'more than one'} {candidates.model.__name__}.")
    return found[0].pk
