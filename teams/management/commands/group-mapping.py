"""`manage.py group-mapping list|add|remove`: what members of a directory (LDAP / Active Directory) or
Microsoft Entra ID group get here, a role and restore grants, worked out again at each sign-in.

    manage.py group-mapping add --source entra 3f2b8a9e-... --role restore-operator --grant-folder DC1/Branch
    manage.py group-mapping add --source entra VMBackup.Admin --role backup-administrator   (an app role)
    manage.py group-mapping add --source directory "CN=Helpdesk,OU=Groups,DC=corp,DC=example" --role auditor
    manage.py group-mapping list [--source entra] [--json]
    manage.py group-mapping remove --source entra 3f2b8a9e-...
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import Folder
from lib.cli import print_rows
from protection.models import ProtectionGroup
from teams import mapping_actions
from teams.mapping import ROLE_NAMES
from teams.models import GroupMapping

CLI_ACTOR = "command line"
SOURCES = [choice.value for choice in GroupMapping.Source]


def role_named(name: str) -> Group:
    """A role by its name ("Restore operator") or its slug ("restore-operator")."""
    for role in ROLE_NAMES:
        if name.strip().lower() in (role.lower(), role.lower().replace(" ", "-")):
            return Group.objects.get(name=role)
    slugs = ", ".join(role.lower().replace(" ", "-") for role in ROLE_NAMES)
    raise CommandError(f"No role {name!r}: use one of {slugs}.")


def _folder(path: str) -> Folder:
    try:
        return Folder.objects.get(path=path, removed_at__isnull=True)
    except Folder.DoesNotExist:
        raise CommandError(f"No folder {path}.") from None
    except Folder.MultipleObjectsReturned:
        raise CommandError(f"More than one vCenter has a folder {path}.") from None


def _group(name: str) -> ProtectionGroup:
    try:
        return ProtectionGroup.objects.get(name=name)
    except ProtectionGroup.DoesNotExist:
        raise CommandError(f"No protection group {name}.") from None


def _same(source: str, mapped: str, given: str) -> bool:
    # Directory DNs compare case-insensitively (teams.mapping); Entra ids and app roles exactly.
    return mapped.lower() == given.lower() if source == "directory" else mapped == given


class Command(BaseCommand):
    help = "List, add or remove what a directory or Entra ID group's members get: a role and restore grants."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every mapping")
        listing.add_argument("--source", choices=SOURCES)
        listing.add_argument("--json", action="store_true")
        add = sub.add_parser("add", help="map a group to a role and grants")
        add.add_argument("--source", choices=SOURCES, required=True)
        add.add_argument("group", help="an LDAP group's DN, an Entra ID group's object id or an app role's value")
        add.add_argument("--role", help="backup-administrator, restore-operator or auditor")
        add.add_argument("--grant-group", action="append", default=[], help="protection group name (repeatable)")
        add.add_argument("--grant-folder", action="append", default=[], help="folder path, e.g. DC1/Prod (repeatable)")
        remove = sub.add_parser("remove", help="remove a group's mapping")
        remove.add_argument("--source", choices=SOURCES, required=True)
        remove.add_argument("group")

    def handle(self, *args: Any, **options: Any) -> None:
        {"list": self.list, "add": self.add, "remove": self.remove}[options["action"]](options)

    def list(self, options: dict[str, Any]) -> None:
        mappings = GroupMapping.objects.select_related("role").prefetch_related("grant_groups", "grant_folders")
        if options["source"]:
            mappings = mappings.filter(source=options["source"])
        rows = [
            {
                "source": m.source,
                "group": m.external_group,
                "role": m.role.name if m.role else None,
                "grant_groups": [g.name for g in m.grant_groups.all()],
                "grant_folders": [f.path for f in m.grant_folders.all()],
            }
            for m in mappings
        ]
        print_rows(
            self.stdout,
            rows,
            as_json=options["json"],
            headers=["SOURCE", "GROUP", "ROLE", "GRANTS"],
            cells=lambda r: [
                r["source"],
                r["group"],
                r["role"] or "-",
                ", ".join(r["grant_groups"] + r["grant_folders"]),
            ],
        )

    def add(self, options: dict[str, Any]) -> None:
        role = role_named(options["role"]) if options["role"] else None
        groups = [_group(name) for name in options["grant_group"]]
        folders = [_folder(path) for path in options["grant_folder"]]
        try:
            mapping = mapping_actions.add_mapping(CLI_ACTOR, options["source"], options["group"], role, groups, folders)
        except mapping_actions.MappingRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Mapped {mapping.get_source_display()} group {mapping.external_group}.")

    def remove(self, options: dict[str, Any]) -> None:
        source, name = options["source"], options["group"].strip()
        mappings = GroupMapping.objects.filter(source=source)
        found = [m for m in mappings if _same(source, m.external_group, name)]
        if not found:
            raise CommandError(f"No {source} mapping for {name}.")
        mapping_actions.remove_mapping(CLI_ACTOR, found[0])
        self.stdout.write(f"Removed the mapping of {found[0].external_group}.")
