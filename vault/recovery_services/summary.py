"""What the Recovery Services panel shows: frozen dataclasses with the labels and tones the template prints.

Azure's own words are kept on the fields; the properties turn them into labels ("CompletedWithWarnings" →
"Completed with warnings") and tones, so the template only prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vault.recovery_services.config import RecoveryServicesConfig

Tone = str  # "ok" | "warn" | "bad" | "info" | "muted": how a status should look; the text says the same

#: Rows are listed worst first.
TONE_ORDER = {"bad": 0, "warn": 1, "info": 2, "muted": 3, "ok": 4}

#: Sections of the status, in display order, with a title and the Azure RBAC action each needs.
SECTIONS: dict[str, tuple[str, str]] = {
    "settings": ("vault settings", "Microsoft.RecoveryServices/Vaults/backupconfig/read"),
    "redundancy": ("storage redundancy", "Microsoft.RecoveryServices/Vaults/backupstorageconfig/read"),
    "engines": ("backup servers", "Microsoft.RecoveryServices/Vaults/backupEngines/read"),
    "protected_items": ("protected items", "Microsoft.RecoveryServices/Vaults/backupProtectedItems/read"),
    "jobs": ("recent jobs", "Microsoft.RecoveryServices/Vaults/backupJobs/read"),
}


@dataclass(frozen=True)
class VaultSettings:
    """The vault's backup configuration and storage redundancy. None where Azure did not say (or we may not read)."""

    soft_delete_state: str | None = None  # "Enabled", "Disabled", "AlwaysON"
    soft_delete_retention_days: int | None = None
    enhanced_security_state: str | None = None  # "Enabled", "Disabled"
    storage_type: str | None = None  # "GeoRedundant", "LocallyRedundant", "ZoneRedundant", ...
    storage_type_state: str | None = None  # "Locked" once a server has registered, else "Unlocked"
    cross_region_restore: bool | None = None

    @property
    def soft_delete_enabled(self) -> bool | None:
        if not self.soft_delete_state or self.soft_delete_state == "Invalid":
            return None
        return self.soft_delete_state.lower() in ("enabled", "alwayson")

    @property
    def soft_delete_label(self) -> str:
        if self.soft_delete_enabled is None:
            return "unknown"
        if not self.soft_delete_enabled:
            return "Off"
        always_on = (self.soft_delete_state or "").lower() == "alwayson"
        always = " (always on, cannot be turned off)" if always_on else ""
        days = (
            f", deleted backup data kept {self.soft_delete_retention_days} days"
            if self.soft_delete_retention_days
            else ""
        )
        return f"On{always}{days}"

    @property
    def soft_delete_tone(self) -> Tone:
        return {None: "muted", True: "ok", False: "warn"}[self.soft_delete_enabled]

    @property
    def enhanced_security_enabled(self) -> bool | None:
        return _on_off(self.enhanced_security_state)

    @property
    def redundancy_label(self) -> str:
        return _STORAGE_TYPES.get(self.storage_type or "", self.storage_type or "unknown")

    @property
    def storage_type_locked(self) -> bool | None:
        if self.storage_type_state in (None, "", "Invalid"):
            return None
        return self.storage_type_state == "Locked"


@dataclass(frozen=True)
class BackupEngine:
    """A backup server registered to the vault: Azure Backup Server or System Center DPM."""

    name: str
    engine_type: str  # "Azure Backup Server", "DPM" or Azure's own word
    version: str | None = None
    agent_version: str | None = None
    health_status: str | None = None  # "Healthy", "Unhealthy", ...
    registration_status: str | None = None  # "Registered", ...
    state: str | None = None  # "Active", "Deleting", "DeleteFailed"
    upgrade_available: bool = False
    protected_items_count: int | None = None
    refreshed_at: datetime | None = None

    @property
    def tone(self) -> Tone:
        health = (self.health_status or "").lower()
        if health in ("unhealthy", "critical") or (self.state or "").lower() == "deletefailed":
            return "bad"
        if (self.registration_status or "").lower() not in ("", "registered") or health in ("warning", "degraded"):
            return "warn"
        if health == "healthy":
            return "ok"
        return "muted"

    @property
    def status_label(self) -> str:
        return self.health_status or "Health unknown"


@dataclass(frozen=True)
class ProtectedItem:
    """One item a backup server (or Azure Backup itself) protects into the vault."""

    name: str
    workload_type: str | None = None  # "VMwareVM", "VM", "FileFolder", "SQLDB", ...
    protection_state: str | None = None  # "Protected", "IRPending", "ProtectionError", "ProtectionStopped", ...
    last_backup_status: str | None = None  # "Completed", "Failed", "Healthy", "Unhealthy", ...
    last_backup_time: datetime | None = None  # the last backup attempt (Azure VMs, MARS agents)
    last_recovery_point: datetime | None = None  # the newest backup copy in the vault
    health_status: str | None = None  # "Passed", "ActionRequired", "ActionSuggested" (Azure VMs only)
    server: str | None = None  # the backup server or agent protecting it; "Azure Backup" for Azure VMs
    management_type: str | None = None  # "AzureBackupServer", "DPM", "MAB", "AzureIaasVM", ...

    @property
    def workload_label(self) -> str:
        return _WORKLOADS.get(self.workload_type or "", self.workload_type or "—")

    @property
    def state_label(self) -> str:
        return _PROTECTION_STATES.get(self.protection_state or "", words(self.protection_state) or "Unknown")

    @property
    def last_backup_label(self) -> str:
        return words(self.last_backup_status) or "—"

    @property
    def tone(self) -> Tone:
        state = (self.protection_state or "").lower()
        last = (self.last_backup_status or "").lower()
        health = (self.health_status or "").lower()
        failed = any(word in last for word in ("fail", "error", "unhealthy"))
        if state == "protectionerror" or failed or health in ("actionrequired", "unhealthy"):
            return "bad"
        if state in ("protectionstopped", "protectionpaused", "backupssuspended") or health == "actionsuggested":
            return "warn"
        if state == "irpending":
            return "info"
        if state == "protected":
            return "ok"
        return "muted"


@dataclass(frozen=True)
class BackupJob:
    """A job the vault recorded: a backup, restore, configuration change and so on."""

    operation: str  # "Backup", "Restore", "ConfigureBackup", ...
    status: str  # "Completed", "InProgress", "Failed", "CompletedWithWarnings", "Cancelled", ...
    entity_name: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: timedelta | None = None
    server: str | None = None
    job_id: str | None = None

    @property
    def operation_label(self) -> str:
        return words(self.operation) or "—"

    @property
    def status_label(self) -> str:
        return words(self.status) or "Unknown"

    @property
    def duration_label(self) -> str:
        if self.duration is None:
            return "—"
        seconds = int(self.duration.total_seconds())
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        if hours:
            return f"{hours} h {minutes:02d} min"
        if minutes:
            return f"{minutes} min {seconds:02d} s"
        return f"{seconds} s"

    @property
    def tone(self) -> Tone:
        status = (self.status or "").lower()
        if status == "completed":
            return "ok"
        if status in ("failed",):
            return "bad"
        if status in ("completedwithwarnings", "cancelled", "cancelling"):
            return "warn"
        if status == "inprogress":
            return "info"
        return "muted"


class _Toned(Protocol):
    @property
    def tone(self) -> Tone: ...


@dataclass(frozen=True)
class RecoveryServicesStatus:
    """Everything the panel shows, read at `fetched_at`. A section that could not be read is named in
    `section_errors` (key from SECTIONS) and its list is empty / its settings None."""

    config: RecoveryServicesConfig
    vault: VaultSettings
    engines: list[BackupEngine] = field(default_factory=list)
    protected_items: list[ProtectedItem] = field(default_factory=list)
    jobs: list[BackupJob] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    jobs_since: datetime | None = None
    section_errors: dict[str, str] = field(default_factory=dict)
    truncated: tuple[str, ...] = ()  # sections cut at client.MAX_ROWS

    @property
    def problems(self) -> int:
        """Protected items, servers and jobs whose status is bad: a number for a summary badge."""
        rows: Iterable[_Toned] = (*self.engines, *self.protected_items, *self.jobs)
        return sum(1 for row in rows if row.tone == "bad")


# ---------------------------------------------------------------------------------------------------------------
# Azure's words → labels.

_STORAGE_TYPES = {
    "GeoRedundant": "Geo-redundant (GRS)",
    "LocallyRedundant": "Locally redundant (LRS)",
    "ZoneRedundant": "Zone-redundant (ZRS)",
    "ReadAccessGeoZoneRedundant": "Read-access geo-zone-redundant (RA-GZRS)",
    "Invalid": "unknown",
}
_WORKLOADS = {
    "VMwareVM": "VMware VM",
    "VM": "Virtual machine",
    "FileFolder": "Files and folders",
    "SQLDB": "SQL database",
    "SQLDataBase": "SQL database",
    "AzureSqlDb": "Azure SQL database",
    "SystemState": "System state",
    "Client": "Client",
    "Exchange": "Exchange",
    "Sharepoint": "SharePoint",
    "AzureFileShare": "Azure file share",
    "GenericDataSource": "Generic data source",
}
_PROTECTION_STATES = {
    "IRPending": "Initial backup pending",
    "Protected": "Protected",
    "ProtectionError": "Protection error",
    "ProtectionStopped": "Protection stopped",
    "ProtectionPaused": "Protection paused",
    "BackupsSuspended": "Backups suspended",
}


def words(value: str | None) -> str:
    """ "CompletedWithWarnings" → "Completed with warnings"; leaves other text alone."""
    if not value:
        return ""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(value))
    first, *rest = spaced.split(" ")
    return " ".join([first, *(w.lower() if not w.isupper() else w for w in rest)])


def _on_off(state: str | None) -> bool | None:
    if not state or state == "Invalid":
        return None
    return state.lower() == "enabled"
