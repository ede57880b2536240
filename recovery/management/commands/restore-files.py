"""`manage.py restore-files VM [--point ID] --path [DISK:VOLUME:]PATH... --to DIR`: copy files out of a point.

Folders are copied with everything below them; a file selected twice (a folder and a file inside it)
is copied once. Names are written as the source held them, byte for byte (an ext4 name that is not
UTF-8 comes back as those bytes); a name Linux cannot hold (an NTFS unpaired surrogate) is written
escaped, and names that meet get a numbered suffix (`name (2).ext`): the report printed at the end
lists each, with every item left out (symbolic links are not followed) and why. Nothing in DIR is
ever overwritten and nothing is written outside it: the command refuses before writing anything.
Recorded like a download in the browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lib.cli import shown
from recovery import actions, browse, names
from recovery import filesystems as fs
from recovery.management.commands._points import CLI_ACTOR, find_point, parse_item
from recovery.restore_plan import PathPlanner, RestoreReport, linux_planner, numbered
from recovery.zipstream import ZipItem

PIECE = 1024 * 1024


@dataclass(frozen=True)
class _Step:
    item: ZipItem
    size: int
    dest: Path
    placed: str  # dest relative to DIR, as the planner gave it


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
        report = RestoreReport()
        try:
            steps = list(_plan(browse.expand(point, items), linux_planner(report), target))
        except (fs.FileSystemError, browse.PointUnavailable) as exc:
            raise CommandError(str(exc)) from None
        _refuse_clashes(steps, target)
        restore = actions.start_file_restore(
            CLI_ACTOR, point, [str(i) for i in items], planned_bytes=sum(step.size for step in steps)
        )
        error = "interrupted"
        try:
            for step in steps:
                _write(step, report)
            # Folder times last, deepest first: writing into a folder moves its time.
            for step in reversed(steps):
                if step.item.open is None:
                    _set_time(step, report)
            error = ""
        finally:
            actions.finish_restore(restore, bytes_done=report.bytes, error=error)
        self.stdout.write(report.text().rstrip("\n"))
        self.stdout.write(f"From {shown(point)} into {shown(target)}.")


def _plan(expanded: Iterator[tuple[ZipItem, int]], planner: PathPlanner, target: Path) -> Iterator[_Step]:
    """Each file and folder once, with where it goes; items left out go to the report."""
    left_out: set[str] = set()
    for item, size in expanded:
        source = "/" + item.name.lstrip("/")
        if item.skipped:
            if source not in left_out:
                left_out.add(source)
                planner.report.skipped.append((source, item.skipped))
            continue
        placed = planner.place(source, is_dir=item.open is None)
        if placed is not None:
            yield _Step(item, size, target / placed, placed)


def _refuse_clashes(steps: list[_Step], target: Path) -> None:
    """Refuse before writing: a file that exists, or a folder that is not a real folder of DIR (a
    symbolic link there would lead the copy out of DIR)."""
    clashes = [step.dest for step in steps if step.item.open is not None and os.path.lexists(step.dest)]
    clashes += [
        step.dest
        for step in steps
        if step.item.open is None and os.path.lexists(step.dest) and (step.dest.is_symlink() or not step.dest.is_dir())
    ]
    if clashes:
        shown = fs_text(clashes[0].relative_to(target))
        raise CommandError(f"{len(clashes)} file(s) exist already in {target}, e.g. {shown}; nothing written.")
    for parent in {step.dest.parent for step in steps}:
        for folder in [parent, *parent.parents]:
            if folder == target or target not in folder.parents:
                break
            if folder.is_symlink():
                raise CommandError(f"{fs_text(folder)} is a symbolic link; nothing written.")


def fs_text(path: Path) -> str:
    """A path of the target as text for a message: bytes that are not UTF-8 escaped as \\xNN."""
    return names.escape(str(path))


def _write(step: _Step, report: RestoreReport) -> None:
    source = "/" + step.item.name.lstrip("/")
    if step.item.open is None:
        step.dest.mkdir(parents=True, exist_ok=True)
        report.folders += 1
        return
    step.dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        stream = step.item.open()
    except (fs.FileSystemError, OSError, ValueError) as exc:
        report.skipped.append((source, f"cannot be read: {exc}"))
        return
    written, failure = 0, ""
    with stream as data, _create(step, report) as out:
        while True:
            try:
                piece = data.read(PIECE)
            except Exception as exc:  # whatever a damaged volume makes dissect raise mid-file
                failure = f"cannot be read past byte {written}: {exc}"
                break
            if not piece:
                break
            out.write(piece)  # a write error (a full disk) ends the command: the target is at fault
            written += len(piece)
    if failure:
        Path(out.name).unlink()  # no half file that looks restored; the report says why it is missing
        report.skipped.append((source, failure))
        return
    report.files += 1
    report.bytes += written
    _set_time(step, report, Path(out.name))


def _create(step: _Step, report: RestoreReport) -> BinaryIO:
    """The new file, opened with "x" (never overwrite, never follow a link). A name that exists by
    now although it was free when checked is one a case-insensitive target (a mounted NTFS or SMB
    share) folds onto a name just written: it is numbered like any other collision."""
    dest, number = step.dest, 1
    while True:
        try:
            out = open(dest, "xb")  # noqa: SIM115 - the caller's with statement closes it
            break
        except FileExistsError:
            number += 1
            dest = step.dest.with_name(numbered(step.dest.name, number, is_dir=False))
    if dest != step.dest:
        shown = names.escape(str(Path(step.placed).with_name(dest.name)))
        report.renamed.append(("/" + step.item.name.lstrip("/"), shown))
    return out


def _set_time(step: _Step, report: RestoreReport, dest: Path | None = None) -> None:
    modified = step.item.modified
    if modified is None:
        return
    try:
        stamp = modified.timestamp()
        os.utime(dest or step.dest, (stamp, stamp))
    except (OSError, OverflowError, ValueError) as exc:
        source = "/" + step.item.name.lstrip("/")
        report.clamped.append((source, f"{modified:%Y-%m-%d %H:%M:%S} UTC", f"not set ({exc})"))
