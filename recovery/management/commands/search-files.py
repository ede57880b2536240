"""`manage.py search-files PATTERN [--vm VM] [--json] [--user USER]`: the file catalog search of the
Recovery page, on the command line. PATTERN is a name or part of one, a glob (`report*`, `*.docx`)
or part of a path (`bob/Documents`). Without --user it sees every VM, as the other commands do;
with it, exactly what that user may restore from."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import VirtualMachine
from lib.cli import print_json, print_table
from recovery import access
from recovery.catalog import search as catalog_search


class ConsoleUser:
    """Whoever runs manage.py on the server: sees every VM (like ls and restore-files)."""

    is_authenticated = True

    def has_perm(self, perm: str) -> bool:
        return True


class Command(BaseCommand):
    help = "Find files and folders in every catalogued recovery point, with their versions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pattern", help="name, glob (report*, *.docx) or part of a path (bob/Documents)")
        parser.add_argument("--vm", help="only this VM's points (VM name)")
        parser.add_argument("--user", help="search as this user: only the VMs and points they may restore from")
        parser.add_argument("--limit", type=int, default=catalog_search.LIMIT)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user(options["user"])
        vm = _vm(options["vm"], user)
        try:
            result = catalog_search.search(user, options["pattern"], vm=vm, limit=options["limit"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            hits = [catalog_search.hit_as_dict(hit) for hit in result.hits]
            print_json(self.stdout, {"query": result.query, "truncated": result.truncated, "results": hits})
            return
        rows = [
            [hit.vm.name, f"{hit.volume.disk_key}:{hit.volume.volume_index}:{hit.path}", _sizes(hit), _points(version)]
            for hit in result.hits
            for version in hit.versions[:1]
        ]
        print_table(self.stdout, ["VM", "DISK:VOLUME:PATH", "SIZE", "VERSIONS (newest first)"], rows)
        for hit in result.hits:
            for version in hit.versions[1:]:
                self.stdout.write(f"  {hit.path}: also {_size(version)} in {_points(version)}")
        if result.truncated:
            self.stderr.write(f"Only the first {len(result.hits)} hits: narrow the pattern, or raise --limit.")


def _user(username: str | None) -> Any:
    if username is None:
        return ConsoleUser()
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}.")
    return user


def _vm(name: str | None, user: Any) -> VirtualMachine | None:
    if name is None:
        return None
    found = list(access.visible_vms(user).filter(name=name)[:2])
    if len(found) != 1:
        raise CommandError(f"{name!r} names {'no' if not found else 'more than one'} VM you may search.")
    return found[0]


def _size(version: catalog_search.Version) -> str:
    return "folder" if version.is_dir else f"{version.size} B"


def _sizes(hit: catalog_search.Hit) -> str:
    return _size(hit.versions[0])


def _points(version: catalog_search.Version) -> str:
    newest = f"{version.newest.created:%Y-%m-%d %H:%M} ({str(version.newest.pk)[:8]})"
    if len(version.points) == 1:
        return newest
    return f"{len(version.points)} points, {version.oldest.created:%Y-%m-%d %H:%M} to {newest}"
