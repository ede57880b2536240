"""`manage.py grant USER (--group NAME | --folder PATH) [--revoke]`, `grant --list`: what restore
operators may restore files from."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import Folder
from lib.cli import print_table, shown
from protection.models import ProtectionGroup
from recovery import actions
from recovery.management.commands._points import CLI_ACTOR
from recovery.models import RestoreGrant


class Command(BaseCommand):
    help = "Grant (or revoke) a restore operator file restores from a protection group or folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", nargs="?")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--group", help="protection group name")
        scope.add_argument("--folder", help="folder path, e.g. DC/Prod")
        parser.add_argument("--revoke", action="store_true")
        parser.add_argument("--list", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            rows = [
                [g.user.get_username(), g.scope] for g in RestoreGrant.objects.select_related("user", "group", "folder")
            ]
            print_table(self.stdout, ["USER", "MAY RESTORE FILES FROM"], rows)
            return
        if not options["user"] or not (options["group"] or options["folder"]):
            raise CommandError("Give a user and --group or --folder (or --list).")
        try:
            user = get_user_model().objects.get(username=options["user"])
            group = ProtectionGroup.objects.get(name=options["group"]) if options["group"] else None
            folder = Folder.objects.get(path=options["folder"], removed_at__isnull=True) if options["folder"] else None
        except (get_user_model().DoesNotExist, ProtectionGroup.DoesNotExist, Folder.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        except Folder.MultipleObjectsReturned:
            raise CommandError(f"More than one vCenter has a folder {options['folder']}.") from None
        if options["revoke"]:
            grant = RestoreGrant.objects.filter(user=user, group=group, folder=folder).first()
            if grant is None:
                raise CommandError("No such grant.")
            actions.remove_grant(CLI_ACTOR, grant)
            self.stdout.write(f"Revoked: {shown(grant)}.")
            return
        try:
            grant = actions.add_grant(CLI_ACTOR, user, group=group, folder=folder)
        except actions.RestoreRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Granted: {shown(grant)}.")
