"""`manage.py restore-files VM [--point ID] --path [DISK:VOLUME:]PATH... --to DIR`: copy files out of a point.

Folders are copied with everything below them. Existing files in DIR are never overwritten: the
command refuses before writing anything. Recorded like a download in the browser.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recovery import actions, browse
from recovery import filesystems as fs
from recovery.management.commands._points import CLI_ACTOR, find_point, parse_item
from recovery.zipstream import safe_name


class Command(BaseCommand):
    help = "Restore files and folders from a recovery point into a local directory."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vm", help="VM name")
        parser.add_argument("--point", help="recovery point id or prefix (default: the newest)")
        parser.add_argument("--path", action="append", required=True, help="[DISK:VOLUME:]PATH, repeatable")
        parser.add_argument("--to", required=True, help="an existing directory to write into")

    def handle(self, *args: Any, **options: Any) -> None:
        target = Path(options["to"])
        if not target.is_dir():
            raise CommandError(f"{target} is not a directory.")
        point = find_point(options["vm"], options["point"])
        items = [parse_item(point, text) for text in options["path"]]
        try:
            planned = list(browse.expand(point, items))
        except (fs.FileSystemError, browse.PointUnavailable) as exc:
            raise CommandError(str(exc)) from None
        clashes = [z.name for z, _ in planned if z.open and (target / safe_name(z.name)).exists()]
        if clashes:
            raise CommandError(f"{len(clashes)} file(s) exist already in {target}, e.g. {clashes[0]}; nothing written.")
        restore = actions.start_file_restore(
            CLI_ACTOR, point, [str(i) for i in items], planned_bytes=sum(size for _, size in planned)
        )
        written, error = 0, "interrupted"
        try:
            for entry, _size in planned:
                dest = target / safe_name(entry.name)
                if entry.open is None:
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with entry.open() as source, open(dest, "xb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                    written += out.tell()
                if entry.modified:
                    stamp = entry.modified.timestamp()
                    os.utime(dest, (stamp, stamp))
            error = ""
        finally:
            actions.finish_restore(restore, bytes_done=written, error=error)
        files = sum(1 for z, _ in planned if z.open)
        self.stdout.write(f"Restored {files} file(s), {written} bytes, from {point} into {target}.")
