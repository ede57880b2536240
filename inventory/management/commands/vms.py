"""`manage.py vms [--folder PATH] [--unprotected] [--json]`: the VM inventory."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from inventory.queries import VmFilter, vm_queryset
from lib.cli import print_rows


class Command(BaseCommand):
    help = "List virtual machines (not the removed ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--folder", help='inventory path of a folder, e.g. "DC/Production"; includes subfolders')
        parser.add_argument("--vcenter", help="only this vCenter connection")
        parser.add_argument("--unprotected", action="store_true", help="only VMs no protection group covers")
        parser.add_argument("--search", help="name contains")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        filters = VmFilter(
            folder_path=options["folder"],
            vcenter_name=options["vcenter"],
            search=options["search"],
            protection="unprotected" if options["unprotected"] else None,
        )
        vms = vm_queryset(filters).select_related("vcenter", "protection_group")
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
        print_rows(
            self.stdout,
            rows,
            as_json=options["json"],
            headers=["NAME", "PATH", "POWER", "GROUP"],
            cells=lambda r: [r["name"], r["path"], r["power_state"], r["group"] or "-"],
        )
