"""Changes to the Entra ID sign-in's group mappings (an Entra group object id or app role value -> a role
and restore grants), each audited in the same transaction. Directory mappings: teams.directory_actions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from audit.actions import record
from inventory.models import Folder
from protection.models import ProtectionGroup
from teams.directory_actions import MappingRefused
from teams.models import GroupMapping


def add_entra_mapping(
    actor: Any,
    external_group: str,
    role: Group | None,
    groups: Iterable[ProtectionGroup] = (),
    folders: Iterable[Folder] = (),
) -> GroupMapping:
    """Map an Entra ID group (its object id, as the `groups` claim carries it) or an app role (its value,
    as the `roles` claim carries it) to a role and restore grants, from the members' next sign-in."""
    external_group = external_group.strip()
    groups, folders = list(groups), list(folders)
    if not external_group:
        raise MappingRefused("Give the Entra ID group's object id or the app role's value.")
    if role is None and not (groups or folders):
        raise MappingRefused("Give the group's members a role, grants, or both.")
    try:
        with transaction.atomic():
            mapping = GroupMapping.objects.create(
                source=GroupMapping.Source.ENTRA, external_group=external_group, role=role
            )
            mapping.grant_groups.set(groups)
            mapping.grant_folders.set(folders)
            record(
                actor,
                "entra.mapping_added",
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


def remove_entra_mapping(actor: Any, mapping: GroupMapping) -> None:
    """Members keep what it gave until their next sign-in, which works their roles out again."""
    with transaction.atomic():
        record(
            actor,
            "entra.mapping_removed",
            target=mapping,
            details={"group": mapping.external_group, "role": mapping.role.name if mapping.role else None},
        )
        mapping.delete()
