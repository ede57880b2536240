"""`manage.py group create|list|show|delete`: protection groups from the command line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from inventory.models import Folder, VirtualMachine
from lib.cli import print_json, print_table, shown
from protection import actions
from protection.forms import PolicyForm
from protection.models import Policy, ProtectionGroup


class Command(BaseCommand):
    help = "Manage protection groups."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a group (refused if a VM would be in two groups)")
        create.add_argument("name")
        create.add_argument("--description", default="")
        create.add_argument("--folder", action="append", default=[], help='inventory path, e.g. "DC/Prod"')
        create.add_argument("--vm", action="append", default=[], help="VM name (repeat for several)")
        create.add_argument("--exclude-vm", action="append", default=[])
        create.add_argument("--schedule", default="daily 22:00", help='"daily 02:00", "every 4h", "mon,fri 22:00"')
        create.add_argument("--timezone", default=timezone.get_current_timezone_name())
        create.add_argument("--local-days", type=int)
        create.add_argument("--local-count", type=int)
        for period in ("daily", "weekly", "monthly", "yearly"):
            create.add_argument(f"--vault-{period}", type=int)
        create.add_argument("--no-replicate", action="store_true")
        create.add_argument("--parallelism", type=int)
        create.add_argument("--window-hours", type=int)
        listing = sub.add_parser("list")
        listing.add_argument("--json", action="store_true")
        show = sub.add_parser("show")
        show.add_argument("name")
        show.add_argument("--json", action="store_true")
        delete = sub.add_parser("delete")
        delete.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_create(self, options: dict[str, Any]) -> None:
        if ProtectionGroup.objects.filter(name__iexact=options["name"]).exists():
            raise CommandError(f"A group named {options['name']!r} already exists.")
        selection = actions.Selection(
            folder_ids=[_folder(path).pk for path in options["folder"]],
            vm_ids=[_vm(name).pk for name in options["vm"]],
            excluded_vm_ids=[_vm(name).pk for name in options["exclude_vm"]],
        )
        if not selection.folder_ids and not selection.vm_ids:
            raise CommandError("Select at least one --folder or --vm.")
        defaults = {f: getattr(Policy(), f) for f in PolicyForm.Meta.fields}
        given = {
            "schedule": options["schedule"],
            "timezone": options["timezone"],
            "local_days": options["local_days"],
            "local_count": options["local_count"],
            "parallelism": options["parallelism"],
            "window_hours": options["window_hours"],
            "replicate": not options["no_replicate"],
            **{f"vault_{p}": options[f"vault_{p}"] for p in ("daily", "weekly", "monthly", "yearly")},
        }
        data = {**defaults, **{k: v for k, v in given.items() if v is not None}}
        if options["local_days"] is None and options["local_count"] is not None:
            data["local_days"] = None
        form = PolicyForm({k: ("" if v is None else v) for k, v in data.items() if v is not False})
        if not form.is_valid():
            problems = (f"{name}: {' '.join(map(str, errors))}" for name, errors in form.errors.items())
            raise CommandError("; ".join(problems))
        try:
            group = actions.save_group(
                None,
                group=None,
                name=options["name"],
                description=options["description"],
                selection=selection,
                policy_values=form.values(),
            )
        except actions.SelectionConflict as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created {shown(group.name)}: {group.members.count()} VMs, {group.policy.parsed_schedule().describe()}."
        )

    def do_list(self, options: dict[str, Any]) -> None:
        rows = [_summary(group) for group in ProtectionGroup.objects.select_related("policy")]
        if options["json"]:
            print_json(self.stdout, rows)
            return
        print_table(
            self.stdout,
            ["NAME", "MEMBERS", "SCHEDULE", "PAUSED"],
            [[r["name"], r["members"], r["schedule"], "yes" if r["paused"] else ""] for r in rows],
        )

    def do_show(self, options: dict[str, Any]) -> None:
        group = _group(options["name"])
        data = {
            **_summary(group),
            "folders": list(group.folders.values_list("path", flat=True)),
            "vms": sorted(group.members.filter(removed_at__isnull=True).values_list("name", flat=True)),
            "excluded_vms": sorted(group.excluded_vms.values_list("name", flat=True)),
            "policy": {f: getattr(group.policy, f) for f in PolicyForm.Meta.fields},
        }
        if options["json"]:
            print_json(self.stdout, data)
            return
        for key, value in data.items():
            self.stdout.write(f"{key}: {shown(value)}")

    def do_delete(self, options: dict[str, Any]) -> None:
        group = _group(options["name"])
        actions.delete_group(None, group)
        self.stdout.write(f"Deleted {shown(group.name)}; its VMs' recovery points are kept.")


def _summary(group: ProtectionGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "members": group.members.filter(removed_at__isnull=True).count(),
        "schedule": group.policy.parsed_schedule().describe(),
        "paused": group.paused,
    }


def _group(name: str) -> ProtectionGroup:
    try:
        return ProtectionGroup.objects.select_related("policy").get(name=name)
    except ProtectionGroup.DoesNotExist:
        raise CommandError(f"No protection group named {name!r}.") from None


def _folder(path: str) -> Folder:
    matches = list(Folder.objects.filter(path=path.strip("/"), removed_at__isnull=True))
    if len(matches) != 1:
        raise CommandError(f"{'No' if not matches else 'More than one'} folder with the path {path!r}.")
    return matches[0]


def _vm(name: str) -> VirtualMachine:
    matches = list(VirtualMachine.objects.filter(name=name, removed_at__isnull=True))
    if len(matches) != 1:
        raise CommandError(
            f"No VM named {name!r}." if not matches else f"{len(matches)} VMs are named {name!r}; rename one first."
        )
    return matches[0]
