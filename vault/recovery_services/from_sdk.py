"""SDK models → the dataclasses of summary.py.

The SDK deserializes each resource to the subclass its discriminator names (DPMProtectedItem,
MabFileFolderProtectedItem, DpmJob, MabJob, AzureBackupServerEngine, ...); the fields differ between them, so each
is read by name with fallbacks (see `_get`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import isodate

from vault.recovery_services.summary import BackupEngine, BackupJob, ProtectedItem, VaultSettings, words

_AZURE_MANAGED = {"AzureIaasVM", "AzureSql", "AzureStorage", "AzureWorkload"}
_ENGINE_TYPES = {
    "AzureBackupServerEngine": "Azure Backup Server",
    "AzureBackupServer": "Azure Backup Server",
    "DpmBackupEngine": "DPM",
    "DPM": "DPM",
}


def vault_settings(settings: Any, storage: Any) -> VaultSettings:
    """From the vault's backupconfig and backupstorageconfig properties (either may be None: not readable)."""
    return VaultSettings(
        soft_delete_state=_str(_get(settings, "soft_delete_feature_state")),
        soft_delete_retention_days=_get(settings, "soft_delete_retention_period_in_days"),
        enhanced_security_state=_str(_get(settings, "enhanced_security_state")),
        storage_type=_str(_get(storage, "storage_type", "storage_model_type") or _get(settings, "storage_type")),
        storage_type_state=_str(_get(storage, "storage_type_state") or _get(settings, "storage_type_state")),
        cross_region_restore=_get(storage, "cross_region_restore_flag"),
    )


def backup_engine(resource: Any) -> BackupEngine:
    props = resource.properties
    engine_type = _str(_get(props, "backup_engine_type")) or ""
    management = _str(_get(props, "backup_management_type")) or ""
    return BackupEngine(
        name=_get(props, "friendly_name") or resource.name or "—",
        engine_type=_ENGINE_TYPES.get(engine_type) or _ENGINE_TYPES.get(management) or words(engine_type) or "—",
        version=_get(props, "dpm_version"),
        agent_version=_get(props, "azure_backup_agent_version"),
        health_status=_get(props, "health_status"),
        registration_status=_get(props, "registration_status"),
        state=_get(props, "backup_engine_state"),
        upgrade_available=bool(
            _get(props, "is_dpm_upgrade_available") or _get(props, "is_azure_backup_agent_upgrade_available")
        ),
        protected_items_count=_get(props, "protected_items_count"),
        refreshed_at=_time(_get(props, "refreshed_at")),
    )


def protected_item(resource: Any) -> ProtectedItem:
    props = resource.properties
    return ProtectedItem(
        name=_get(props, "friendly_name") or resource.name or "—",
        workload_type=_str(_get(props, "workload_type")),
        protection_state=_str(_get(props, "protection_state", "protection_status")),
        last_backup_status=_str(_get(props, "last_backup_status")),
        last_backup_time=_time(_get(props, "last_backup_time")),
        last_recovery_point=_time(_get(props, "last_recovery_point", "on_premise_latest_recovery_point")),
        health_status=_str(_get(props, "health_status")),
        server=_get(props, "backup_engine_name", "computer_name") or _server_fallback(props),
        management_type=_str(_get(props, "backup_management_type")),
    )


def backup_job(resource: Any) -> BackupJob:
    props = resource.properties
    return BackupJob(
        operation=_get(props, "operation") or "—",
        status=_get(props, "status") or "Unknown",
        entity_name=_get(props, "entity_friendly_name") or "—",
        start_time=_time(_get(props, "start_time")),
        end_time=_time(_get(props, "end_time")),
        duration=_duration(_get(props, "duration")),
        server=_get(props, "dpm_server_name", "mab_server_name") or _server_fallback(props),
        job_id=resource.name,
    )


def _get(model: Any, *names: str) -> Any:
    """The first of these fields that is set, on the model or on its extendedInfo.

    Typed attributes first; then the wire JSON the model wraps (SDK models are mappings over it), because the SDK
    does not resolve nested discriminators: an Azure VM item ("Microsoft.Compute/virtualMachines") arrives as a
    bare ProtectedItem whose friendlyName, lastBackupTime... are only in the mapping.
    """
    if model is None:
        return None
    extended = getattr(model, "extended_info", None) or _raw(model, "extendedInfo")
    for name in names:
        for source in (model, extended):
            value = getattr(source, name, None)
            if value is None:
                value = _raw(source, re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name))
            if value is not None:
                return value
    return None


def _raw(model: Any, key: str) -> Any:
    return model.get(key) if isinstance(model, Mapping) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


def _duration(value: Any) -> timedelta | None:
    if isinstance(value, str):
        try:
            return isodate.parse_duration(value)
        except (ValueError, isodate.ISO8601Error):
            return None
    return value if isinstance(value, timedelta) else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))  # SDK enums are str subclasses; keep Azure's word


def _server_fallback(props: Any) -> str | None:
    """Who protects an item or ran a job when no server is named: Azure Backup itself for Azure workloads."""
    management = _str(_get(props, "backup_management_type")) or ""
    if management in _AZURE_MANAGED:
        return "Azure Backup"
    return _get(props, "container_name")
