"""Read-only status of an Azure Recovery Services vault, for customers who also run MABS / Azure Backup.

This talks to Azure Resource Manager, the *management plane*, through the Recovery Services backup SDK. It only
reads settings and status: the vault's soft delete and security settings, its storage redundancy, the backup
servers (Azure Backup Server / DPM) registered to it, the items they protect and the jobs of the last day.
Our own backup data never goes through this API, and cannot: Resource Manager carries no backup data, only
descriptions of it. Recovery points of this product are written to the local store and replicated to Blob
storage elsewhere; this module is a status panel beside them, for customers who also run Microsoft Azure
Backup Server or Azure Backup and want to see that vault on the same page.

Plain Python (no Django): `fetch_status(config, credential)` returns frozen dataclasses for the template
`vault/_recovery_services.html`. Errors that stop the whole read raise `RecoveryServicesError` with one line
fit to show; a section the identity may not read (HTTP 403) is recorded in `section_errors` and the others are
still shown. Messages never contain the credential or a token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import isodate
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

__all__ = [
    "API_VERSION",
    "BackupEngine",
    "BackupJob",
    "ProtectedItem",
    "RecoveryServicesConfig",
    "RecoveryServicesError",
    "RecoveryServicesStatus",
    "SECTIONS",
    "VaultSettings",
    "fetch_status",
]

#: The Recovery Services REST API version the pinned SDK (azure-mgmt-recoveryservicesbackup 11.2.0) speaks.
API_VERSION = "2026-10-01"

#: Recent jobs are those started within this window before the read.
JOBS_WINDOW = timedelta(hours=24)

#: At most this many rows per list: the panel is a summary, and a runaway nextLink chain must end.
MAX_ROWS = 500

# A status panel should fail within seconds, not after azure-core's defaults (300 s timeouts, 10 retries); and
# the SDK's request/response log (headers redacted) goes to DEBUG, so a refresh does not write a dozen INFO records.
_CLIENT_OPTIONS = {
    "connection_timeout": 10,
    "read_timeout": 60,
    "retry_total": 2,
    "http_logging_level": logging.DEBUG,
}

#: Sections of the status, in display order, with a title and the Azure RBAC action each needs.
SECTIONS: dict[str, tuple[str, str]] = {
    "settings": ("vault settings", "Microsoft.RecoveryServices/Vaults/backupconfig/read"),
    "redundancy": ("storage redundancy", "Microsoft.RecoveryServices/Vaults/backupstorageconfig/read"),
    "engines": ("backup servers", "Microsoft.RecoveryServices/Vaults/backupEngines/read"),
    "protected_items": ("protected items", "Microsoft.RecoveryServices/Vaults/backupProtectedItems/read"),
    "jobs": ("recent jobs", "Microsoft.RecoveryServices/Vaults/backupJobs/read"),
}

# Azure's naming rules (Microsoft.Resources and Microsoft.RecoveryServices).
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{1,90}$")  # letters and digits (Unicode), - _ . ( ); not ending in "."
_VAULT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,49}$")  # 2-50, starts with a letter, letters digits hyphens

Tone = str  # "ok" | "warn" | "bad" | "info" | "muted": how a status should look; the text says the same


class RecoveryServicesError(Exception):
    """The vault could not be read at all; str() is one sentence fit to show to the administrator."""


@dataclass(frozen=True)
class RecoveryServicesConfig:
    """Which vault to read. Holds no secret: the credential is passed separately to `fetch_status`."""

    subscription_id: str
    resource_group: str
    vault_name: str

    def __post_init__(self) -> None:
        subscription = str(self.subscription_id or "").strip()
        group = str(self.resource_group or "").strip()
        vault = str(self.vault_name or "").strip()
        if not _GUID.match(subscription):
            raise ValueError(
                "The subscription ID must be a GUID such as 00000000-0000-0000-0000-000000000000 "
                "(Azure portal → Subscriptions)."
            )
        if not _RESOURCE_GROUP.match(group) or group.endswith("."):
            raise ValueError(
                "The resource group name must be 1 to 90 letters, digits, hyphens, underscores, periods or "
                "parentheses, and may not end with a period."
            )
        if not _VAULT_NAME.match(vault):
            raise ValueError("The vault name must be 2 to 50 letters, digits or hyphens, starting with a letter.")
        object.__setattr__(self, "subscription_id", subscription.lower())
        object.__setattr__(self, "resource_group", group)
        object.__setattr__(self, "vault_name", vault)

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.RecoveryServices/vaults/{self.vault_name}"
        )


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
        always = " (always on, cannot be turned off)" if self.soft_delete_state.lower() == "alwayson" else ""
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
        return _PROTECTION_STATES.get(self.protection_state or "", _words(self.protection_state) or "Unknown")

    @property
    def last_backup_label(self) -> str:
        return _words(self.last_backup_status) or "—"

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
        return _words(self.operation) or "—"

    @property
    def status_label(self) -> str:
        return _words(self.status) or "Unknown"

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
    truncated: tuple[str, ...] = ()  # sections cut at MAX_ROWS

    @property
    def problems(self) -> int:
        """Protected items, servers and jobs whose status is bad: a number for a summary badge."""
        rows: Iterable[Any] = (*self.engines, *self.protected_items, *self.jobs)
        return sum(1 for row in rows if row.tone == "bad")


def fetch_status(
    config: RecoveryServicesConfig,
    credential: Any,
    *,
    transport: Any = None,
    now: datetime | None = None,
) -> RecoveryServicesStatus:
    """Read the vault's settings, servers, protected items and the last day's jobs.

    `credential` is any azure-core TokenCredential (e.g. azure.identity.ClientSecretCredential); it is used, not
    kept or closed. `transport` replaces the HTTP transport (tests replay recorded responses through it).
    Raises RecoveryServicesError when the vault cannot be read at all.
    """
    now = now or datetime.now(UTC)
    since = now - JOBS_WINDOW
    options: dict[str, Any] = dict(_CLIENT_OPTIONS)
    if transport is not None:
        options["transport"] = transport
    errors: dict[str, str] = {}
    truncated: list[str] = []
    try:
        with RecoveryServicesBackupClient(credential, config.subscription_id, **options) as client:
            vault_name, group = config.vault_name, config.resource_group

            def section(name: str, read: Callable[[], _T], default: _T) -> _T:
                try:
                    return read()
                except ClientAuthenticationError:
                    raise
                except HttpResponseError as exc:
                    if exc.status_code != 403:
                        raise
                    errors[name] = _forbidden_message(name, exc)
                    return default

            def listed(name: str, pages: Iterable[Any], convert: Callable[[Any], _T]) -> list[_T]:
                rows: list[_T] = []
                for resource in pages:
                    if len(rows) >= MAX_ROWS:
                        truncated.append(name)
                        break
                    rows.append(convert(resource))
                return rows

            settings = section(
                "settings", lambda: client.backup_resource_vault_configs.get(vault_name, group).properties, None
            )
            storage = section(
                "redundancy",
                lambda: client.backup_resource_storage_configs_non_crr.get(vault_name, group).properties,
                None,
            )
            engines = section(
                "engines",
                lambda: listed("engines", client.backup_engines.list(vault_name, group), _engine),
                [],
            )
            items = section(
                "protected_items",
                lambda: listed("protected_items", client.backup_protected_items.list(vault_name, group), _item),
                [],
            )
            jobs = section(
                "jobs",
                lambda: listed(
                    "jobs", client.backup_jobs.list(vault_name, group, filter=_jobs_filter(since, now)), _job
                ),
                [],
            )
    except AzureError as exc:
        raise RecoveryServicesError(_error_message(config, exc)) from None
    if len(errors) == len(SECTIONS):
        raise RecoveryServicesError(
            f"The identity may not read vault {config.vault_name}: give it the Backup Reader role on the vault "
            f"(or on resource group {config.resource_group})."
        )

    return RecoveryServicesStatus(
        config=config,
        vault=_vault_settings(settings, storage),
        engines=sorted(engines, key=lambda e: (_TONE_ORDER[e.tone], e.name.lower())),
        protected_items=sorted(items, key=lambda i: (_TONE_ORDER[i.tone], i.name.lower())),
        jobs=sorted(jobs, key=lambda j: j.start_time or datetime.min.replace(tzinfo=UTC), reverse=True),
        fetched_at=now,
        jobs_since=since,
        section_errors=errors,
        truncated=tuple(truncated),
    )


# ---------------------------------------------------------------------------------------------------------------
# SDK models → dataclasses. The SDK deserializes each resource to the subclass its discriminator names
# (DPMProtectedItem, MabFileFolderProtectedItem, DpmJob, MabJob, AzureBackupServerEngine, ...); the fields differ
# between them, so each is read by name with fallbacks (see _get).

_T = TypeVar("_T")
_TONE_ORDER = {"bad": 0, "warn": 1, "info": 2, "muted": 3, "ok": 4}


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


def _vault_settings(settings: Any, storage: Any) -> VaultSettings:
    return VaultSettings(
        soft_delete_state=_str(_get(settings, "soft_delete_feature_state")),
        soft_delete_retention_days=_get(settings, "soft_delete_retention_period_in_days"),
        enhanced_security_state=_str(_get(settings, "enhanced_security_state")),
        storage_type=_str(_get(storage, "storage_type", "storage_model_type") or _get(settings, "storage_type")),
        storage_type_state=_str(_get(storage, "storage_type_state") or _get(settings, "storage_type_state")),
        cross_region_restore=_get(storage, "cross_region_restore_flag"),
    )


def _engine(resource: Any) -> BackupEngine:
    props = resource.properties
    engine_type = _str(_get(props, "backup_engine_type")) or ""
    management = _str(_get(props, "backup_management_type")) or ""
    return BackupEngine(
        name=_get(props, "friendly_name") or resource.name or "—",
        engine_type=_ENGINE_TYPES.get(engine_type) or _ENGINE_TYPES.get(management) or _words(engine_type) or "—",
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


def _item(resource: Any) -> ProtectedItem:
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


def _job(resource: Any) -> BackupJob:
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


def _server_fallback(props: Any) -> str | None:
    """Who protects an item or ran a job when no server is named: Azure Backup itself for Azure workloads."""
    management = _str(_get(props, "backup_management_type")) or ""
    if management in _AZURE_MANAGED:
        return "Azure Backup"
    return _get(props, "container_name")


def _jobs_filter(since: datetime, until: datetime) -> str:
    """The OData filter the backupJobs API accepts: start and end of the window, UTC, in its own time format."""
    fmt = "%Y-%m-%d %I:%M:%S %p"
    return (
        f"startTime eq '{since.astimezone(UTC).strftime(fmt)}' and endTime eq '{until.astimezone(UTC).strftime(fmt)}'"
    )


# ---------------------------------------------------------------------------------------------------------------
# Errors: one line each, Azure's own message where it helps, never a token.

_SECRETISH = [
    re.compile(r"(?i)bearer\s+[\w\-.~+/=]+"),
    re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"),  # a JWT
    re.compile(r"(?i)(client_secret|password|secret|sig|token)=[^&\s]+"),
]


def _scrub(text: str) -> str:
    for pattern in _SECRETISH:
        text = pattern.sub("[redacted]", text)
    return text


def _azure_message(exc: AzureError) -> str:
    """Azure's error message, first line, without the "(Code)" prefix, at most 300 characters."""
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^\([\w.]+\)\s*", "", text)
    text = _scrub(text)
    return text if len(text) <= 300 else text[:297] + "..."


def _azure_code(exc: AzureError) -> str:
    return str(getattr(getattr(exc, "error", None), "code", None) or "")


def _forbidden_message(section: str, exc: HttpResponseError) -> str:
    title, action = SECTIONS[section]
    match = re.search(r"perform action '([\w./-]+)'", _azure_message(exc))
    action = match.group(1) if match else action
    return (
        f"No permission to read the {title}: the identity needs {action} on the vault "
        f"(the Backup Reader role includes it)."
    )


def _error_message(config: RecoveryServicesConfig, exc: AzureError) -> str:
    where = f"resource group {config.resource_group} (subscription {config.subscription_id})"
    if isinstance(exc, ClientAuthenticationError):
        return f"Azure refused the credentials: {_azure_message(exc)}"
    if isinstance(exc, ResourceNotFoundError):
        code = _azure_code(exc)
        if code == "ResourceGroupNotFound":
            return (
                f"Resource group {config.resource_group} not found in subscription {config.subscription_id}, "
                f"so vault {config.vault_name} cannot be read."
            )
        if code in ("SubscriptionNotFound", "InvalidSubscriptionId"):
            return f"Subscription {config.subscription_id} not found, so vault {config.vault_name} cannot be read."
        return f"Vault {config.vault_name} not found in {where}."
    if isinstance(exc, ServiceRequestError):
        return f"Cannot reach Azure Resource Manager: {_azure_message(exc)}"
    if isinstance(exc, ServiceResponseError):
        return f"Azure Resource Manager did not answer: {_azure_message(exc)}"
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        reason = getattr(exc, "reason", None) or ""
        prefix = f"Azure answered HTTP {status}{' ' + reason if reason else ''}"
        return f"{prefix} for vault {config.vault_name}: {_azure_message(exc)}"
    return f"Reading vault {config.vault_name} failed: {_azure_message(exc)}"


# ---------------------------------------------------------------------------------------------------------------
# Azure's words → labels.

_STORAGE_TYPES = {
    "GeoRedundant": "Geo-redundant (GRS)",
    "LocallyRedundant": "Locally redundant (LRS)",
    "ZoneRedundant": "Zone-redundant (ZRS)",
    "ReadAccessGeoZoneRedundant": "Read-access geo-zone-redundant (RA-GZRS)",
    "Invalid": "unknown",
}
_AZURE_MANAGED = {"AzureIaasVM", "AzureSql", "AzureStorage", "AzureWorkload"}
_ENGINE_TYPES = {
    "AzureBackupServerEngine": "Azure Backup Server",
    "AzureBackupServer": "Azure Backup Server",
    "DpmBackupEngine": "DPM",
    "DPM": "DPM",
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


def _words(value: str | None) -> str:
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
