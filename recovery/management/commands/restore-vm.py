"""`manage.py restore-vm VM [--point ID] [--wait]` and one of:

- a new VM: `--name NEW --folder PATH --pool PATH --datastore PATH [--host PATH] [--network OLD=NEW ...]
  [--disconnect-nics]`;
- over the original: `--overwrite [--yes]`;
- one disk into an existing VM: `--disk N --to-vm VM --to-disk M [--yes]`.

Places are inventory paths as govc writes them (`DC0/host/DC0_C0/Resources`, `DC0/vm/Restored`,
`DC0/datastore/ds1`, `DC0/network/VM Network`; a "/" inside a name as %2f), or names unique in the
VM's datacenter (inventory.placement). `--network OLD=NEW` connects the adapters that were on the
network OLD (or the adapter labelled OLD) to NEW; `OLD=` leaves them disconnected, as
`--disconnect-nics` does for all. Adapters not named get the page's default: disconnected while the
original VM still exists, else the network of the same name."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import VirtualDisk, VirtualMachine
from jobs.cli import wait_for_job
from lib.cli import shown
from recovery import actions
from recovery.forms import NIC_FIELD_PREFIX, RestoreVmForm
from recovery.management.commands._points import CLI_ACTOR, find_point
from vault.models import RecoveryPoint


class Command(BaseCommand):
    help = "Restore a whole VM, or one of its disks, from a recovery point."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", help="VM name")
        parser.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        parser.add_argument("--name", help="name of the new VM")
        parser.add_argument("--folder", help="VM folder of the new VM: path (DC/vm/Restored or DC/Restored) or name")
        parser.add_argument("--datastore", help="datastore for the new VM's disks: path (DC/datastore/ds1) or name")
        parser.add_argument("--pool", help="resource pool: path (DC/host/Cluster/Resources) or unique name")
        parser.add_argument("--host", help="host (optional): path (DC/host/Cluster/esx01) or name")
        parser.add_argument(
            "--network",
            action="append",
            default=[],
            metavar="OLD=NEW",
            help="connect the adapters that were on OLD (a network name or an adapter label) to NEW (path or "
            "name); OLD= leaves them disconnected (repeatable)",
        )
        parser.add_argument("--disconnect-nics", action="store_true", help="leave every network adapter disconnected")
        parser.add_argument("--overwrite", action="store_true", help="restore over the original VM")
        parser.add_argument("--disk", help="one disk of the point (its key, e.g. 2000, or its number, 1 for the first)")
        parser.add_argument("--to-vm", help="with --disk: the VM whose disk is replaced")
        parser.add_argument("--to-disk", help="with --disk: that VM's disk (key or number)")
        parser.add_argument("--yes", action="store_true", help="with --overwrite or --disk: do not ask")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        point = find_point(options["vm"], options["point"])
        if options["overwrite"]:
            data = _overwrite_data(point.vm, confirmed=options["yes"])
        elif options["disk"] or options["to_vm"] or options["to_disk"]:
            data = _one_disk_data(point, options)
        else:
            data = _new_vm_data(options)
        form = RestoreVmForm({k: v for k, v in data.items() if v is not None}, point=point)
        if data["mode"] == "new":
            form.data = {**form.data, **_nic_data(form, options)}
        if not form.is_valid():
            problems = [
                _field_words(field) + " ".join(str(message) for message in errors)
                for field, errors in form.errors.items()
            ]
            raise CommandError("; ".join(problems))
        target = form.target()
        if target["mode"] == "new" and form.beside_original and target.get("nics"):
            connected = [key for key, network in target["nics"].items() if network]
            state = "some are connected as asked" if connected else "they are left disconnected"
            self.stdout.write(
                f"Warning: {shown(point.vm.name)} still exists; the restored VM has its identity, so {state} "
                "(two machines with one identity must not share a network)."
            )
        run = actions.start_vm_restore(CLI_ACTOR, point, target)
        self.stdout.write(f"{shown(run.title)}: job {run.pk}.")
        if options["wait"]:
            wait_for_job(self.stdout, run)


def _field_words(field: str) -> str:
    """How an error's field is named on the command line ("--pool: ", "--network for adapter 4000: ")."""
    if field == "__all__":
        return ""
    if field.startswith(NIC_FIELD_PREFIX):
        return f"--network for adapter {field.removeprefix(NIC_FIELD_PREFIX)}: "
    return f"--{field.replace('_', '-')}: " if field in _OPTION_FIELDS else f"{field}: "


_OPTION_FIELDS = {"name", "folder", "pool", "datastore", "host"}


def _confirm(vm_name: str, what: str, *, confirmed: bool) -> None:
    """Ask for the VM's name to be typed (unless --yes), as the page does."""
    if confirmed:
        return
    answer = input(f"{vm_name} will be powered off and {what} overwritten. Type its name: ")
    if answer.strip() != vm_name:
        raise CommandError("Not confirmed; nothing was changed.")


def _overwrite_data(vm: VirtualMachine, *, confirmed: bool) -> dict[str, Any]:
    """The form's data for a restore over the VM, once its name is typed (unless --yes)."""
    _confirm(vm.name, "its disks", confirmed=confirmed)
    return {"mode": "overwrite", "confirm": vm.name}


def _new_vm_data(options: dict[str, Any]) -> dict[str, Any]:
    """The form's data for a new VM; the form resolves the places (paths or unique names)."""
    return {
        "mode": "new",
        "name": options["name"] or "",
        **{kind: options[kind] or None for kind in ("folder", "pool", "datastore", "host")},
    }


def _nic_data(form: RestoreVmForm, options: dict[str, Any]) -> dict[str, Any]:
    """The adapters' fields from --disconnect-nics and --network OLD=NEW (an unknown OLD is an error)."""
    mapping: dict[str, str] = {}
    if options["disconnect_nics"]:
        mapping = {str(nic["key"]): "" for nic in form.captured_nics()}
    for item in options["network"]:
        old, sep, new = item.partition("=")
        if not sep or not old.strip():
            raise CommandError(f"--network {item!r}: write OLD=NEW (or OLD= for disconnected).")
        mapping[old.strip()] = new.strip()
    return form.nic_data(mapping)


def _one_disk_data(point: RecoveryPoint, options: dict[str, Any]) -> dict[str, Any]:
    """The form's data for one disk of the point into a disk of an existing VM, once that VM's name is
    typed (unless --yes)."""
    if not (options["disk"] and options["to_vm"] and options["to_disk"]):
        raise CommandError("One disk needs --disk N, --to-vm VM and --to-disk M.")
    source_keys = sorted(point.disks.values_list("key", flat=True))
    source_key = _disk_key(options["disk"], source_keys, f"the point of {point.vm.name}")
    vms = list(VirtualMachine.objects.filter(name=options["to_vm"], removed_at__isnull=True)[:2])
    if len(vms) != 1:
        raise CommandError(f"{options['to_vm']!r} names {'no' if not vms else 'more than one'} VM.")
    target_vm = vms[0]
    disks = {disk.key: disk for disk in VirtualDisk.objects.filter(vm=target_vm)}
    target = disks[_disk_key(options["to_disk"], sorted(disks), target_vm.name)]
    _confirm(target_vm.name, f"its {target.label}", confirmed=options["yes"])
    return {"mode": "disk", "source_disk": source_key, "target_disk": target.pk, "confirm": target_vm.name}


def _disk_key(text: str, keys: list[int], whose: str) -> int:
    """A disk given by key (2000) or by number (1 for the first, in key order)."""
    if not text.strip().isdigit():
        raise CommandError(f"{text!r}: give a disk's key (e.g. 2000) or its number (1, 2, ...).")
    number = int(text)
    if number in keys:
        return number
    if 1 <= number <= len(keys):
        return keys[number - 1]
    raise CommandError(f"{whose} has no disk {number} (keys: {', '.join(map(str, keys)) or 'none'}).")
