"""Create a backup administrator: `python manage.py createadmin USERNAME [--password-stdin]`."""

from __future__ import annotations

import getpass
import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.roles import BACKUP_ADMIN
from audit.actions import record


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
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        password = self._password(options)
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=options["email"], password=password)
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(Group.objects.get(name=BACKUP_ADMIN))
            record(None, "account.create_admin", target=user, details={"username": username})
        self.stdout.write(f"Backup administrator {username!r} created.")
        if options["generate"]:
            self.stdout.write(f"Password (shown once): {password}")

    def _password(self, options: dict[str, Any]) -> str:
        if options["generate"]:
            return secrets.token_urlsafe(12)
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        return password
