"""Create a backup administrator: `python manage.py createadmin USERNAME [--password-stdin | --generate]`.

The same as `manage.py user add NAME --role administrator`; a generated password must be changed at
the first sign-in."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import actions
from accounts.roles import BACKUP_ADMIN


class Command(BaseCommand):
    help = "Create a user with the Backup administrator role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        source.add_argument("--generate", action="store_true", help="generate a password and print it once")
        parser.add_argument("--if-none", action="store_true", help="do nothing when an administrator already exists")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if options["if_none"] and User.objects.filter(groups__name=BACKUP_ADMIN).exists():
            return
        username: str = options["username"]
        password = None if options["generate"] else self._password(options)
        try:
            created = actions.create_user(
                None, username, roles=[BACKUP_ADMIN], email=options["email"], password=password
            )
        except actions.UserRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Backup administrator {username!r} created.")
        if created.one_time_password:
            self.stdout.write(f"Password (shown once; to be changed at first sign-in): {created.one_time_password}")

    def _password(self, options: dict[str, Any]) -> str:
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        return password  # validated by create_user, against the user's name too
