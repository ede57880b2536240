"""Read-only status of an Azure Recovery Services vault, for customers who also run MABS / Azure Backup.

This talks to Azure Resource Manager, the *management plane*, through the Recovery Services backup SDK. It only
reads settings and status: the vault's soft delete and security settings, its storage redundancy, the backup
servers (Azure Backup Server / DPM) registered to it, the items they protect and the jobs of the last day.
Our own backup data never goes through this API, and cannot: Resource Manager carries no backup data, only
descriptions of it. Recovery points of this product are written to the local store and replicated to Blob
storage elsewhere; this package is a status panel beside them, for customers who also run Microsoft Azure
Backup Server or Azure Backup and want to see that vault on the same page.

Plain Python (no Django). `fetch_status(config, credential)` (client.py) returns the frozen dataclasses of
summary.py for the template `vault/_recovery_services.html`; `read_with_default_credential` is what the Vault
page calls. Errors that stop the whole read raise `RecoveryServicesError` with one line fit to show (errors.py);
a section the identity may not read (HTTP 403) is recorded in `section_errors` and the others are still shown.
Messages never contain the credential or a token.

    config.py       which vault: subscription, resource group, name (checked against Azure's rules)
    client.py       the calls to Resource Manager
    from_sdk.py     SDK models → summary dataclasses
    summary.py      what the panel shows, with labels and tones
    errors.py       one-line messages, scrubbed of tokens
    credentials.py  the server's own Azure identity
"""

from __future__ import annotations

from vault.recovery_services.client import API_VERSION, fetch_status
from vault.recovery_services.config import RecoveryServicesConfig
from vault.recovery_services.credentials import default_credential
from vault.recovery_services.errors import RecoveryServicesError
from vault.recovery_services.summary import (
    SECTIONS,
    BackupEngine,
    BackupJob,
    ProtectedItem,
    RecoveryServicesStatus,
    VaultSettings,
)

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
    "read_with_default_credential",
]


def read_with_default_credential(config: RecoveryServicesConfig) -> RecoveryServicesStatus:
    """The vault's status read with the server's own Azure identity; raises RecoveryServicesError."""
    return fetch_status(config, default_credential())
