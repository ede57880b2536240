"""`manage.py vms [--folder PATH] [--unprotected] [--json]`: the VM inventory."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from inventory.queries import vm_queryset
from lib.cli import print_json, print_table


class Command(BaseCommand):
    help = "List virtual machines (not the removed ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--folder", help='inventory path of a folder, e.g. "DC/Production"; includes subfolders')
        parser.add_argument("--vcenter", help="only this vCenter connection")
        parser.add_argument("--unprotected", action="store_true", help="only VMs no protection group covers")
        parser.add_argument("--search", help="name contains")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        vms = vm_queryset(
            folder_path=options["folder"],
            vcenter_name=options["vcenter"],
            search=options["search"],
            protection="unprotected" if options["unprotected"] else "",
        ).select_related("vcenter", "protection_group")
        rows = [
            {
                "name": vm.name,
                "path": vm.path,
                "vcenter": vm.vcenter.name,
                "power_state": vm.power_state,
                "group": vm.protection_group.name if vm.protection_group else None,
                "instance_uuid": vm.instance_uuid,
            }
            for vm in vms
        ]
        if options["json"]:
            print_json(self.stdout, rows)
            return
        print_table(
            self.stdout,
            ["NAME", "PATH", "POWER", "GROUP"],
            [[r["name"], r["path"], r["power_state"], r["group"] or "-"] for r in rows],
        )
