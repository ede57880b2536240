"""`manage.py token create USER --name NAME [--scope read|operate] [--expires-days N]`,
`manage.py token list [USER] [--json]`, `manage.py token revoke ID`: API tokens from the command line.

`create` prints only the key on standard output (so `KEY=$(manage.py token create bob --name backup-check)`
works); the key is kept nowhere but as its SHA-256 and cannot be shown again. Creation and revocation
are audited as "command line".
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import tokens
from accounts.models import ApiToken
from lib.cli import shown

CLI_ACTOR = "command line"


class Command(BaseCommand):
    help = "Create, list and revoke API tokens (a new token's key is printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token for USER and print its key once")
        create.add_argument("user", help="user name")
        create.add_argument("--name", default="command line", help="what uses the token")
        create.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.READ)
        create.add_argument(
            "--expires-days",
            type=int,
            default=tokens.DEFAULT_EXPIRY_DAYS,
            help=f"days until it expires, 1 to {tokens.MAX_EXPIRY_DAYS} (default: {tokens.DEFAULT_EXPIRY_DAYS})",
        )
        listing = sub.add_parser("list", help="list tokens (never their keys)")
        listing.add_argument("user", nargs="?", help="only this user's tokens")
        listing.add_argument("--json", action="store_true", help="one JSON array")
        revoke = sub.add_parser("revoke", help="revoke the token with this ID")
        revoke.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except tokens.TokenRefused as exc:
            raise CommandError(str(exc)) from None

    def _create(self, options: dict[str, Any]) -> None:
        user = _user(options["user"])
        token, key = tokens.create_token(CLI_ACTOR, user, options["name"], options["scope"], options["expires_days"])
        self.stdout.write(key)
        self.stderr.write(
            f"API token {token.pk} of {user.get_username()} ({token.get_scope_display()}, "
            f"expires {token.expires:%Y-%m-%d %H:%M} UTC). "
        )
        self.stderr.write("Shown once; send it as 'Authorization: Token <key>'.")

    def _list(self, options: dict[str, Any]) -> None:
        rows = ApiToken.objects.select_related("user").order_by("user__username", "-created")
        if options["user"]:
            rows = rows.filter(user=_user(options["user"]))
        data = [_row(token) for token in rows]
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        for row in data:
            self.stdout.write(
                f"{row['id']:>5}  {shown(row['user']):<20} {shown(row['name']):<24} {row['prefix']}…  {row['scope']:<8}"
                f"{row['state']:<8} expires {row['expires'] or 'never'}  last used {row['last_used'] or 'never'}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        token = ApiToken.objects.select_related("user").filter(pk=options["id"]).first()
        if token is None:
            raise CommandError(f"No API token {options['id']}.")
        tokens.revoke_token(CLI_ACTOR, token)
        owner = shown(token.user.get_username())
        self.stderr.write(f"API token {token.pk} ({shown(token.name)}) of {owner} is revoked.")


def _user(username: str) -> Any:
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No user {username!r}.") from None


def _row(token: ApiToken) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": token.pk,
        "user": token.user.get_username(),
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "state": tokens.state_of(token),
        "created": when(token.created),
        "expires": when(token.expires),
        "last_used": when(token.last_used),
    }
