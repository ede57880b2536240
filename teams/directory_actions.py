"""Changes to directory sign-in: its saved settings and its group mappings, each audited in the same
transaction. The bind password is never written to the audit log (only whether it changed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from audit.actions import record
from inventory.models import Folder
from protection.models import ProtectionGroup
from teams.directory import DirectorySettings
from teams.models import DirectoryConfig, GroupMapping

AUDITED_FIELDS = (
    "server_uri",
    "start_tls",
    "ca_file",
    "bind_dn",
    "user_search_base",
    "user_search_filter",
    "group_search_base",
    "group_type",
)


class MappingRefused(Exception):
    """The mapping cannot be added; the message says why."""


def save_directory_config(actor: Any, settings: DirectorySettings, *, enabled: bool) -> DirectoryConfig:
    """Save settings that passed the Directory page's test."""
    with transaction.atomic():
        config = DirectoryConfig.objects.select_for_update().get_or_create(pk=1)[0]
        changed = [name for name in AUDITED_FIELDS if getattr(config, name) != getattr(settings, name)]
        password_changed = config.bind_password != settings.bind_password
        for name in AUDITED_FIELDS:
            setattr(config, name, getattr(settings, name))
        config.bind_password = settings.bind_password
        if config.enabled != enabled:
            changed.append("enabled")
        config.enabled = enabled
        config.save()
        details: dict[str, Any] = {name: getattr(config, name) for name in changed}
        details["bind_password_changed"] = password_changed
        record(actor, "directory.configured", target=config, details=details)
    return config


def disable_directory(actor: Any) -> None:
    with transaction.atomic():
        config = DirectoryConfig.objects.select_for_update().get_or_create(pk=1)[0]
        if config.enabled:
            config.enabled = False
            config.save(update_fields=["enabled", "updated"])
            record(actor, "directory.disabled", target=config)


def add_mapping(
    actor: Any,
    external_group: str,
    role: Group | None,
    groups: Iterable[ProtectionGroup] = (),
    folders: Iterable[Folder] = (),
) -> GroupMapping:
    """Map a directory group (its DN) to a role and restore grants, from the members' next sign-in."""
    external_group = external_group.strip()
    groups, folders = list(groups), list(folders)
    if role is None and not (groups or folders):
        raise MappingRefused("Give the group's members a role, grants, or both.")
    existing = GroupMapping.objects.filter(source=GroupMapping.Source.DIRECTORY)
    if any(m.external_group.lower() == external_group.lower() for m in existing):
        raise MappingRefused(f"{external_group} already has a mapping: remove it first to change it.")
    try:
        with transaction.atomic():
            mapping = GroupMapping.objects.create(
                source=GroupMapping.Source.DIRECTORY, external_group=external_group, role=role
            )
            mapping.grant_groups.set(groups)
            mapping.grant_folders.set(folders)
            record(
                actor,
                "directory.mapping_added",
                target=mapping,
                details={
                    "group": external_group,
                    "role": role.name if role else None,
                    "grant_groups": [g.name for g in groups],
                    "grant_folders": [f.path for f in folders],
                },
            )
    except IntegrityError:
        raise MappingRefused(f"{external_group} already has a mapping.") from None
    return mapping


def remove_mapping(actor: Any, mapping: GroupMapping) -> None:
    """Members keep what it gave until their next sign-in, which works their roles out again."""
    with transaction.atomic():
        record(
            actor,
            "directory.mapping_removed",
            target=mapping,
            details={"group": mapping.external_group, "role": mapping.role.name if mapping.role else None},
        )
        mapping.delete()
