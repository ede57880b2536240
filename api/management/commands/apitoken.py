"""`manage.py apitoken USER [--rotate | --revoke]`: an API token for a user, printed once.

Only the token goes to standard output (so `KEY=$(manage.py apitoken bob)` works); it is not kept
anywhere readable by the product's pages, logs or audit trail, and cannot be shown again: a lost
token is replaced with --rotate.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api import actions

CLI_ACTOR = "command line"


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (--rotate replaces an existing one, --revoke deletes it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="user name")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--rotate", action="store_true", help="replace the user's token with a new one")
        mode.add_argument("--revoke", action="store_true", help="delete the user's token")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {options['user']!r}.") from None
        try:
            if options["revoke"]:
                actions.revoke_token(CLI_ACTOR, user)
                self.stderr.write(f"The API token of {user.get_username()} is revoked.")
                return
            key = actions.create_token(CLI_ACTOR, user, rotate=options["rotate"])
        except actions.TokenRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(key)
        self.stderr.write(f"API token of {user.get_username()} (shown once; send it as 'Authorization: Token <key>').")
