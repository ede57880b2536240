"""Where the vault's secret is sent, and the rules for it.

A connection string, SAS token or account key authorises whoever receives it: it must only ever
travel over HTTPS, and only to the endpoint it was saved for. `secret_for` decides, before anything
connects, whether the settings being tried may use the stored secret; `require_https` refuses an
endpoint in the clear. The one exception is the Azure Storage emulator (Azurite) on this machine,
allowed by the VAULT_ALLOW_HTTP_EMULATOR setting (the tests set it; see README "Configuration").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from vault.models import VaultSettings

# The emulator's well-known development account (UseDevelopmentStorage=true).
EMULATOR_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# Ways of signing in that send the stored secret to the account URL.
_SECRET_AT_ACCOUNT_URL = {VaultSettings.Auth.SAS, VaultSettings.Auth.KEY}


class EndpointRefused(ValueError):
    """The settings would send the secret in the clear or to another endpoint; nothing was sent."""


@dataclass(frozen=True)
class Endpoint:
    """What decides where a stored secret goes."""

    kind: str
    auth: str
    account_url: str  # "" when the secret itself names the endpoint (a connection string)


def endpoint_of(config: VaultSettings) -> Endpoint:
    url = config.account_url.strip().lower() if config.auth in _SECRET_AT_ACCOUNT_URL else ""
    return Endpoint(config.kind, config.auth, url)


def uses_stored_secret(config: VaultSettings) -> bool:
    return config.kind == VaultSettings.Kind.AZURE and config.auth != VaultSettings.Auth.DEFAULT_CREDENTIAL


def secret_for(config: VaultSettings, stored: VaultSettings | None, secret: str | None) -> str | None:
    """The secret `config` may use: the one given, else the stored one, but only while the endpoint
    is the one it was saved for. Raises EndpointRefused otherwise."""
    if secret is not None or stored is None or not stored.secret_encrypted or not uses_stored_secret(config):
        return secret
    if endpoint_of(config) != endpoint_of(stored):
        what = "storage account URL"
        if config.kind != stored.kind:
            what = "kind of vault"
        elif config.auth != stored.auth:
            what = "authentication"
        raise EndpointRefused(
            f"Changing the {what} requires re-entering the secret: the stored one is only ever sent to the "
            "endpoint it was saved for."
        )
    return stored.secret


def require_https(config: VaultSettings, secret: str | None) -> None:
    """Refuse an Azure endpoint that is not HTTPS (the emulator on this machine aside, when allowed)."""
    if config.kind != VaultSettings.Kind.AZURE:
        return
    if config.auth == VaultSettings.Auth.CONNECTION_STRING:
        if secret:  # None: the stored string, checked when it was saved
            _check_url(blob_endpoint(secret), "The connection string's blob endpoint")
        return
    _check_url(config.account_url, "The storage account URL")


def blob_endpoint(connection_string: str) -> str:
    """The blob service URL a connection string points at, as the Azure SDK derives it."""
    parts: dict[str, str] = {}
    for item in connection_string.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return EMULATOR_BLOB_ENDPOINT
    if parts.get("blobendpoint"):
        return parts["blobendpoint"]
    protocol = parts.get("defaultendpointsprotocol", "https").lower()
    suffix = parts.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{parts.get('accountname', '')}.blob.{suffix}"


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "https":
        return
    if scheme == "http" and parts.hostname in LOOPBACK_HOSTS and settings.VAULT_ALLOW_HTTP_EMULATOR:
        return
    raise EndpointRefused(
        f"{what} must start with https://: otherwise the secret would cross the network readable by anyone on "
        "the path (plain HTTP is allowed only for the Azure Storage emulator on this machine, with "
        "VAULT_ALLOW_HTTP_EMULATOR=true)."
    )
