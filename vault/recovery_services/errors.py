"""Errors of a read: one line each, Azure's own message where it helps, never a credential or a token."""

from __future__ import annotations

import re

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from vault.recovery_services.config import RecoveryServicesConfig
from vault.recovery_services.summary import SECTIONS


class RecoveryServicesError(Exception):
    """The vault could not be read at all; str() is one sentence fit to show to the administrator."""


_SECRETISH = [
    re.compile(r"(?i)bearer\s+[\w\-.~+/=]+"),
    re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"),  # a JWT
    re.compile(r"(?i)(client_secret|password|secret|sig|token)=[^&\s]+"),
]


def forbidden_message(section: str, exc: HttpResponseError) -> str:
    """What to grant so that this section (a key of SECTIONS) can be read."""
    title, action = SECTIONS[section]
    match = re.search(r"perform action '([\w./-]+)'", _azure_message(exc))
    action = match.group(1) if match else action
    return (
        f"No permission to read the {title}: the identity needs {action} on the vault "
        f"(the Backup Reader role includes it)."
    )


def no_section_readable(config: RecoveryServicesConfig) -> RecoveryServicesError:
    """Every section answered 403: one message instead of a notice per section."""
    return RecoveryServicesError(
        f"The identity may not read vault {config.vault_name}: give it the Backup Reader role on the vault "
        f"(or on resource group {config.resource_group})."
    )


def error_message(config: RecoveryServicesConfig, exc: AzureError) -> str:
    """One sentence saying why the whole read stopped."""
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
