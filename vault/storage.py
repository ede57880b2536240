"""The storage engine as this installation configures it: the local store, the vault, and both."""

from __future__ import annotations

from django.conf import settings

from vault import engine
from vault.engine.sealing import parse_key
from vault.models import VaultSettings


class VaultNotConfigured(Exception):
    pass


def local_store() -> engine.Store:
    return engine.Store(settings.BACKUP_STORE_DIR, quota_bytes=settings.BACKUP_STORE_QUOTA)


# A settings check answers in seconds: few retries, short timeouts (replications keep the defaults).
QUICK_CHECK = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}


def backend_for(config: VaultSettings, *, secret: str | None = None, quick: bool = False) -> engine.Backend:
    """The back end these settings describe (`secret` overrides the stored one, to test a form)."""
    secret = config.secret if secret is None else secret
    options = QUICK_CHECK if quick else {}
    if config.kind == VaultSettings.Kind.DIRECTORY:
        return engine.blobs.DirectoryBackend(config.directory)
    if config.kind == VaultSettings.Kind.AZURE:
        from vault.engine.azure_blob import AzureBlobBackend, default_credential

        if config.auth == VaultSettings.Auth.CONNECTION_STRING:
            return AzureBlobBackend.from_connection_string(secret, config.container, **options)
        if config.auth == VaultSettings.Auth.DEFAULT_CREDENTIAL:
            return AzureBlobBackend.from_account(config.account_url, config.container, default_credential(), **options)
        return AzureBlobBackend.from_account(config.account_url, config.container, secret, **options)
    raise VaultNotConfigured("No vault is configured: recovery points are kept on this server's disk only.")


def remote_vault(config: VaultSettings | None = None) -> engine.RemoteVault:
    config = config or VaultSettings.current()
    key = parse_key(config.encryption_key) if config.encrypted else None
    return engine.RemoteVault(backend_for(config), key)


def vault_if_configured() -> engine.RemoteVault | None:
    config = VaultSettings.current()
    return remote_vault(config) if config.enabled else None


def tiered_store() -> engine.TieredStore:
    """What restores read: the local store first, then the vault for what is only there."""
    return engine.TieredStore(local_store(), vault_if_configured())
