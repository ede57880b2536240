"""`manage.py points [VM] [--json]`: recovery points, newest first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from lib.cli import print_json, print_table
from vault.models import RecoveryPoint


def point_row(point: RecoveryPoint) -> dict[str, Any]:
    return {
        "id": str(point.pk),
        "vm": point.vm.name,
        "created": point.created.isoformat(timespec="seconds"),
        "consistency": point.consistency,
        "logical_bytes": point.logical_bytes,
        "new_bytes": point.new_bytes,
        "disks": [{"key": d.key, "label": d.label, "read_path": d.read_path} for d in point.disks.all()],
        "local": point.local,
        "vault": point.vault_status,
        "verified": point.verified_at.isoformat(timespec="seconds") if point.verified_at else None,
        "damaged": point.damaged,
    }


class Command(BaseCommand):
    help = "List recovery points."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", nargs="?", help="only this VM (name)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        points = RecoveryPoint.objects.select_related("vm").prefetch_related("disks")
        if options["vm"]:
            points = points.filter(vm__name=options["vm"])
        rows = [point_row(point) for point in points]
        if options["json"]:
            print_json(self.stdout, rows)
            return
        print_table(
            self.stdout,
            ["ID", "VM", "CREATED", "CONSISTENCY", "SIZE MiB", "NEW MiB", "STATUS"],
            [
                [
                    r["id"][:8],
                    r["vm"],
                    r["created"],
                    r["consistency"],
                    r["logical_bytes"] // 2**20,
                    f"{r['new_bytes'] / 2**20:.1f}",
                    "damaged" if r["damaged"] else "local",
                ]
                for r in rows
            ],
        )
