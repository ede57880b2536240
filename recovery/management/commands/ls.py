"""`manage.py ls VM [--point ID] [[DISK:VOLUME:]PATH] [--json]`: volumes of a point, or a folder in it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lib.cli import print_json, print_table
from recovery import browse
from recovery import filesystems as fs
from recovery.management.commands._points import find_point, parse_item
from vault.models import RecoveryPoint


class Command(BaseCommand):
    help = "List the volumes of a recovery point, or the files in one of its folders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", help="VM name")
        parser.add_argument("path", nargs="?", help="[DISK:VOLUME:]PATH; without it, the volumes")
        parser.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        point = find_point(options["vm"], options["point"])
        if options["path"]:
            self._list_folder(point, options["path"], as_json=options["json"])
        else:
            self._list_volumes(point, as_json=options["json"])

    def _list_volumes(self, point: RecoveryPoint, *, as_json: bool) -> None:
        volumes = [(view.disk.key, volume) for view in browse.disk_views(point) for volume in _volumes_of(view)]
        if as_json:
            rows = [
                {
                    "disk": disk,
                    "volume": volume.index,
                    "label": volume.label,
                    "fs": volume.fs_type,
                    "size": volume.size,
                    "browsable": volume.browsable,
                    "reason": volume.reason,
                }
                for disk, volume in volumes
            ]
            print_json(self.stdout, rows)
            return
        table = [[f"{disk}:{v.index}:", v.label or "", v.fs_type or "", v.size, v.reason] for disk, v in volumes]
        print_table(self.stdout, ["VOLUME", "LABEL", "FS", "BYTES", "NOTE"], table)

    def _list_folder(self, point: RecoveryPoint, path: str, *, as_json: bool) -> None:
        item = parse_item(point, path)
        try:
            entries = browse.open_filesystem(point, item.disk, item.volume).list_dir(item.path)
        except (fs.FileSystemError, browse.PointUnavailable) as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            rows = [
                {"name": e.name, "dir": e.is_dir, "size": e.size, "modified": e.modified, "owner": e.owner_display}
                for e in entries
            ]
            print_json(self.stdout, rows)
            return
        table = [
            [e.name + ("/" if e.is_dir else ""), "" if e.is_dir else e.size, e.modified or "", e.owner_display or ""]
            for e in entries
        ]
        print_table(self.stdout, ["NAME", "BYTES", "MODIFIED", "OWNER"], table)


def _volumes_of(view: browse.DiskView) -> list[fs.Volume]:
    return view.layout.volumes if view.layout else []
