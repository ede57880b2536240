"""Changes to directory sign-in: its saved settings and its group mappings, each audited in the same
transaction. The bind password is never written to the audit log (only whether it changed). Its group
mappings change through teams.mapping_actions, as Entra ID's do."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.actions import record
from teams.directory import DirectorySettings
from teams.models import DirectoryConfig

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
