"""`manage.py user add|list|disable|enable|role|reset-password`: local users from a shell.

Every change is audited as the command-line user. A generated one-time password is printed once and
must be changed at the first sign-in; `--password-stdin` reads a chosen one instead (never argv).
"""

from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import actions
from accounts.models import Profile
from lib.cli import print_rows, shown

CLI_ACTOR = "command line"
ROLES = ", ".join(actions.ROLE_SLUGS)


def _role_names(slugs: list[str]) -> list[str]:
    unknown = [s for s in slugs if s not in actions.ROLE_SLUGS]
    if unknown:
        raise CommandError(f"No such role: {', '.join(unknown)} (roles: {ROLES}).")
    return [actions.ROLE_SLUGS[s] for s in slugs]


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise CommandError("No password on stdin.")
    return password


class Command(BaseCommand):
    help = "Create, list, disable, enable local users and set their roles."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a local user (prints a one-time password unless --password-stdin)")
        add.add_argument("name")
        add.add_argument("--role", required=True, action="append", choices=list(actions.ROLE_SLUGS))
        add.add_argument("--email", default="")
        add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

        listing = sub.add_parser("list", help="every user: roles, how they sign in, last sign-in, state")
        listing.add_argument("--json", action="store_true")

        for name, text in (("disable", "stop a user signing in; ends their sessions, revokes API tokens"),
                           ("enable", "let a disabled user sign in again")):  # fmt: skip
            sub.add_parser(name, help=text).add_argument("name")

        role = sub.add_parser("role", help="give a local user exactly these roles")
        role.add_argument("name")
        role.add_argument("roles", nargs="+", metavar="ROLE", help=ROLES)

        reset = sub.add_parser("reset-password", help="a new one-time password (or --password-stdin)")
        reset.add_argument("name")
        reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list(options["json"])
            return
        try:
            if action == "add":
                self._add(options)
            else:
                self._change(action, self._user(options["name"]), options)
        except actions.UserRefused as exc:
            raise CommandError(str(exc)) from None

    @staticmethod
    def _user(name: str) -> Any:
        try:
            return get_user_model().objects.get(username=name)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {name!r}.") from None

    def _add(self, options: dict[str, Any]) -> None:
        password = _read_password() if options["password_stdin"] else None
        created = actions.create_user(
            CLI_ACTOR, options["name"], roles=_role_names(options["role"]), email=options["email"], password=password
        )
        self.stdout.write(f"User {created.user.get_username()!r} created.")
        if created.one_time_password:
            password = created.one_time_password
            self.stdout.write(f"One-time password (shown once; to be changed at first sign-in): {password}")

    def _change(self, action: str, user: Any, options: dict[str, Any]) -> None:
        name = shown(user.get_username())  # a directory's user name may hold control characters
        if action == "disable":
            actions.disable_user(CLI_ACTOR, user)
            self.stdout.write(f"{name} disabled: their sessions ended and their API tokens were revoked.")
        elif action == "enable":
            actions.enable_user(CLI_ACTOR, user)
            self.stdout.write(f"{name} enabled.")
        elif action == "role":
            actions.set_roles(CLI_ACTOR, user, _role_names(options["roles"]))
            self.stdout.write(f"{name}: {', '.join(sorted(user.groups.values_list('name', flat=True)))}.")
        elif options["password_stdin"]:
            actions.set_password(CLI_ACTOR, user, _read_password())
            self.stdout.write(f"Password of {name} set.")
        else:
            password = actions.reset_password(CLI_ACTOR, user)
            self.stdout.write(f"One-time password of {name} (shown once; to be changed at sign-in): {password}")

    def _list(self, as_json: bool) -> None:
        users = get_user_model().objects.select_related("profile").prefetch_related("groups").order_by("username")
        rows = []
        for user in users:
            profile = getattr(user, "profile", None)
            rows.append(
                {
                    "username": user.get_username(),
                    "email": user.email,
                    "roles": sorted(g.name for g in user.groups.all()),
                    "sign_in": profile.sign_in if profile else Profile.SignIn.LOCAL,
                    "active": user.is_active,
                    "must_change_password": bool(profile and profile.must_change_password),
                    "last_login": user.last_login.isoformat() if user.last_login else None,
                }
            )
        print_rows(
            self.stdout,
            rows,
            as_json=as_json,
            headers=["USER", "ROLES", "SIGNS IN", "LAST SIGN-IN", "STATE"],
            cells=lambda r: [
                r["username"],
                ", ".join(r["roles"]) or "-",
                r["sign_in"],
                (r["last_login"] or "never")[:16],
                "active" if r["active"] else "disabled",
            ],
        )
