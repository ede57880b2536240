"""The calls to Azure Resource Manager: one read of a vault's five sections through the Recovery Services SDK."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

from vault.recovery_services import from_sdk
from vault.recovery_services.config import RecoveryServicesConfig
from vault.recovery_services.errors import (
    RecoveryServicesError,
    error_message,
    forbidden_message,
    no_section_readable,
)
from vault.recovery_services.summary import (
    SECTIONS,
    TONE_ORDER,
    BackupEngine,
    BackupJob,
    ProtectedItem,
    RecoveryServicesStatus,
)

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

_T = TypeVar("_T")


def fetch_status(
    config: RecoveryServicesConfig,
    credential: TokenCredential,
    *,
    transport: HttpTransport | None = None,
    now: datetime | None = None,
) -> RecoveryServicesStatus:
    """Read the vault's settings, servers, protected items and the last day's jobs.

    `credential` is any azure-core TokenCredential (e.g. azure.identity.ClientSecretCredential); it is used, not
    kept or closed. `transport` replaces the HTTP transport (tests answer with hand-made ARM-shaped responses
    through it). Raises RecoveryServicesError when the vault cannot be read at all.
    """
    now = now or datetime.now(UTC)
    since = now - JOBS_WINDOW
    options: dict[str, Any] = dict(_CLIENT_OPTIONS)
    if transport is not None:
        options["transport"] = transport
    try:
        with RecoveryServicesBackupClient(credential, config.subscription_id, **options) as client:
            read = _read_sections(client, config, _jobs_filter(since, now))
    except AzureError as exc:
        raise RecoveryServicesError(error_message(config, exc)) from None
    if len(read.errors) == len(SECTIONS):
        raise no_section_readable(config)
    return RecoveryServicesStatus(
        config=config,
        vault=from_sdk.vault_settings(read.settings, read.storage),
        engines=sorted(read.engines, key=lambda e: (TONE_ORDER[e.tone], e.name.lower())),
        protected_items=sorted(read.items, key=lambda i: (TONE_ORDER[i.tone], i.name.lower())),
        jobs=sorted(read.jobs, key=lambda j: j.start_time or datetime.min.replace(tzinfo=UTC), reverse=True),
        fetched_at=now,
        jobs_since=since,
        section_errors=read.errors,
        truncated=tuple(read.truncated),
    )


@dataclass
class _Sections:
    """What one read gave: a section that answered 403 is named in `errors` and left None / empty."""

    settings: Any = None  # the SDK's BackupResourceVaultConfig
    storage: Any = None  # the SDK's BackupResourceConfig
    engines: list[BackupEngine] = field(default_factory=list)
    items: list[ProtectedItem] = field(default_factory=list)
    jobs: list[BackupJob] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)  # sections cut at MAX_ROWS

    def resource(self, name: str, read: Callable[[], Any]) -> Any:
        """A single resource's properties, or None if the identity may not read this section."""
        try:
            return read()
        except HttpResponseError as exc:
            self._forgive_forbidden(name, exc)
            return None

    def rows(self, name: str, pages: Callable[[], Iterable[Any]], convert: Callable[[Any], _T]) -> list[_T]:
        """Up to MAX_ROWS converted rows of a list (following nextLink), or [] if the identity may not read it."""
        rows: list[_T] = []
        try:
            for entry in pages():
                if len(rows) >= MAX_ROWS:
                    self.truncated.append(name)
                    break
                rows.append(convert(entry))
        except HttpResponseError as exc:
            self._forgive_forbidden(name, exc)
            return []
        return rows

    def _forgive_forbidden(self, name: str, exc: HttpResponseError) -> None:
        """Note a 403 on this section and carry on; re-raise anything else (it stops the whole read)."""
        if isinstance(exc, ClientAuthenticationError) or exc.status_code != 403:
            raise exc
        self.errors[name] = forbidden_message(name, exc)


def _read_sections(client: RecoveryServicesBackupClient, config: RecoveryServicesConfig, jobs_filter: str) -> _Sections:
    vault, group = config.vault_name, config.resource_group
    read = _Sections()
    read.settings = read.resource("settings", lambda: client.backup_resource_vault_configs.get(vault, group).properties)
    read.storage = read.resource(
        "redundancy", lambda: client.backup_resource_storage_configs_non_crr.get(vault, group).properties
    )
    read.engines = read.rows("engines", lambda: client.backup_engines.list(vault, group), from_sdk.backup_engine)
    read.items = read.rows(
        "protected_items", lambda: client.backup_protected_items.list(vault, group), from_sdk.protected_item
    )
    read.jobs = read.rows(
        "jobs", lambda: client.backup_jobs.list(vault, group, filter=jobs_filter), from_sdk.backup_job
    )
    return read


def _jobs_filter(since: datetime, until: datetime) -> str:
    """The OData filter the backupJobs API accepts: start and end of the window, UTC, in its own time format."""
    fmt = "%Y-%m-%d %I:%M:%S %p"
    return (
        f"startTime eq '{since.astimezone(UTC).strftime(fmt)}' and endTime eq '{until.astimezone(UTC).strftime(fmt)}'"
    )
