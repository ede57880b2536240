"""`manage.py ls VM [--point ID] [[DISK:VOLUME:]PATH] [--json]`: volumes of a point, or a folder in it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lib.cli import print_json, print_table
from recovery import browse
from recovery import filesystems as fs
from recovery.management.commands._points import find_point, parse_item


class Command(BaseCommand):
    help = "List the volumes of a recovery point, or the files in one of its folders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", help="VM name")
        parser.add_argument("path", nargs="?", help="[DISK:VOLUME:]PATH; without it, the volumes")
        parser.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        point = find_point(options["vm"], options["point"])
        if not options["path"]:
            rows = [
                {
                    "disk": view.disk.key,
                    "volume": volume.index,
                    "label": volume.label,
                    "fs": volume.fs_type,
                    "size": volume.size,
                    "browsable": volume.browsable,
                    "reason": volume.reason,
                }
                for view in browse.disk_views(point)
                for volume in (view.layout.volumes if view.layout else [])
            ]
            if options["json"]:
                print_json(self.stdout, rows)
            else:
                table = [
                    [f"{r['disk']}:{r['volume']}:", r["label"] or "", r["fs"] or "", r["size"], r["reason"]]
                    for r in rows
                ]
                print_table(self.stdout, ["VOLUME", "LABEL", "FS", "BYTES", "NOTE"], table)
            return
        item = parse_item(point, options["path"])
        try:
            entries = browse.open_filesystem(point, item.disk, item.volume).list_dir(item.path)
        except (fs.FileSystemError, browse.PointUnavailable) as exc:
            raise CommandError(str(exc)) from None
        rows = [
            {"name": e.name, "dir": e.is_dir, "size": e.size, "modified": e.modified, "owner": e.owner_display}
            for e in entries
        ]
        if options["json"]:
            print_json(self.stdout, rows)
            return
        table = [
            [
                r["name"] + ("/" if r["dir"] else ""),
                "" if r["dir"] else r["size"],
                r["modified"] or "",
                r["owner"] or "",
            ]
            for r in rows
        ]
        print_table(self.stdout, ["NAME", "BYTES", "MODIFIED", "OWNER"], table)
