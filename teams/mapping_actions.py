"""Changes to the group mappings of directory and Entra ID sign-in (a directory group's DN, or an Entra
ID group object id / app role value -> a role and restore grants), each audited in the same transaction.
They apply from the members' next sign-in (teams.mapping)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from audit.actions import record
from inventory.models import Folder
from protection.models import ProtectionGroup
from teams.models import GroupMapping

# The audit actions' prefix, by source: "directory.mapping_added", "entra.mapping_removed".
_AUDIT_PREFIX = {GroupMapping.Source.DIRECTORY: "directory", GroupMapping.Source.ENTRA: "entra"}
_WHAT = {
    GroupMapping.Source.DIRECTORY: "the directory group's DN",
    GroupMapping.Source.ENTRA: "the Entra ID group's object id or the app role's value",
}


class MappingRefused(Exception):
    """The mapping cannot be added; the message says why."""


def add_mapping(
    actor: Any,
    source: str,
    external_group: str,
    role: Group | None,
    groups: Iterable[ProtectionGroup] = (),
    folders: Iterable[Folder] = (),
) -> GroupMapping:
    """Map an external group to a role and restore grants. Directory DNs are compared case-insensitively,
    as LDAP compares them; Entra ids and app role values exactly."""
    source = GroupMapping.Source(source)
    external_group = external_group.strip()
    groups, folders = list(groups), list(folders)
    if not external_group:
        raise MappingRefused(f"Give {_WHAT[source]}.")
    if role is None and not (groups or folders):
        raise MappingRefused("Give the group's members a role, grants, or both.")
    taken = GroupMapping.objects.filter(source=source).values_list("external_group", flat=True)
    if source == GroupMapping.Source.DIRECTORY and external_group.lower() in {t.lower() for t in taken}:
        raise MappingRefused(f"{external_group} already has a mapping: remove it first to change it.")
    try:
        with transaction.atomic():
            mapping = GroupMapping.objects.create(source=source, external_group=external_group, role=role)
            mapping.grant_groups.set(groups)
            mapping.grant_folders.set(folders)
            record(
                actor,
                f"{_AUDIT_PREFIX[source]}.mapping_added",
                target=mapping,
                details={
                    "group": external_group,
                    "role": role.name if role else None,
                    "grant_groups": [g.name for g in groups],
                    "grant_folders": [f.path for f in folders],
                },
            )
    except IntegrityError:
        raise MappingRefused(f"{external_group} already has a mapping: remove it first to change it.") from None
    return mapping


def remove_mapping(actor: Any, mapping: GroupMapping) -> None:
    """Members keep what it gave until their next sign-in, which works their roles out again."""
    with transaction.atomic():
        record(
            actor,
            f"{_AUDIT_PREFIX[GroupMapping.Source(mapping.source)]}.mapping_removed",
            target=mapping,
            details={"group": mapping.external_group, "role": mapping.role.name if mapping.role else None},
        )
        mapping.delete()
