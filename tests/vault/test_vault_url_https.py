"""The vault's secret travels over HTTPS only, and only to the endpoint it was saved for: an http://
account URL or connection string is refused (Azurite on this machine aside, with
VAULT_ALLOW_HTTP_EMULATOR, which the test run sets), and moving the vault elsewhere needs the secret
typed again. Refusals come before anything connects (a listening socket shows nobody called)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from vault import actions
from vault.endpoints import blob_endpoint
from vault.models import VaultSettings

pytestmark = pytest.mark.django_db
KEY = "c2VjcmV0LWFjY291bnQta2V5"  # what the stored secret is: it must never leave for a new endpoint
FORM = {"container": "vmbackup", "upload_threads": 4, "tier": "Cool", "gc_grace_hours": 24}


@pytest.fixture
def trap() -> Iterator[socket.socket]:
    """A port on this machine that listens and records whether anyone connected."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nobody_called(trap: socket.socket) -> bool:
    try:
        conn, _ = trap.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.fixture
def key_vault() -> VaultSettings:
    """An Azure vault signed in with an account key, as saved earlier."""
    config = VaultSettings.current()
    config.kind, config.auth, config.account_url = "azure", "key", "https://backups.blob.core.windows.net"
    config.secret = KEY
    config.save()
    return config


def test_an_http_account_url_is_refused_with_a_sentence(as_admin, settings, trap):
    settings.VAULT_ALLOW_HTTP_EMULATOR = False
    url = f"http://127.0.0.1:{trap.getsockname()[1]}/account"
    form = FORM | {"kind": "azure", "auth": "key", "account_url": url, "secret": KEY}

    body = as_admin.post("/vault/settings/", form).content.decode()

    assert "The storage account URL must start with https://" in body and KEY not in body
    assert nobody_called(trap)
    assert VaultSettings.current().kind == "none" and not AuditEntry.objects.filter(action="vault.settings").exists()


def test_an_http_connection_string_is_refused_unless_it_is_the_emulator_here(settings, trap):
    port = trap.getsockname()[1]
    config = VaultSettings(kind="azure", auth="connection_string", container="vmbackup")
    elsewhere = f"DefaultEndpointsProtocol=http;AccountName=backups;AccountKey={KEY};EndpointSuffix=example.com"
    local = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:{port}/a;"

    settings.VAULT_ALLOW_HTTP_EMULATOR = True
    with pytest.raises(actions.VaultActionError, match="blob endpoint must start with https://"):
        actions.check_vault(config, secret=elsewhere)
    settings.VAULT_ALLOW_HTTP_EMULATOR = False
    with pytest.raises(actions.VaultActionError, match="VAULT_ALLOW_HTTP_EMULATOR=true"):
        actions.check_vault(config, secret=local)
    assert nobody_called(trap)


def test_the_emulator_setting_lets_azurite_on_this_machine_be_used(azurite, settings):
    settings.VAULT_ALLOW_HTTP_EMULATOR = True
    config = VaultSettings(kind="azure", auth="connection_string", container="emulated")

    assert "emulated" in actions.check_vault(config, secret=azurite.connection_string())
    assert blob_endpoint("UseDevelopmentStorage=true") == "http://127.0.0.1:10000/devstoreaccount1"


def test_moving_the_account_url_without_the_secret_is_refused_before_connecting(as_admin, key_vault, trap):
    url = f"https://127.0.0.1:{trap.getsockname()[1]}/stolen"
    form = FORM | {"kind": "azure", "auth": "key", "account_url": url, "secret": ""}

    body = as_admin.post("/vault/settings/", form).content.decode()

    assert (
        "Changing the storage account URL requires re-entering the secret: the stored one is only ever sent to "
        "the endpoint it was saved for." in body
    )
    assert nobody_called(trap)
    assert VaultSettings.current().account_url == "https://backups.blob.core.windows.net"


def test_switching_the_stored_connection_string_to_an_account_url_is_refused(settings, trap):
    config = VaultSettings.current()
    config.kind, config.auth = "azure", "connection_string"
    config.secret = f"DefaultEndpointsProtocol=https;AccountName=backups;AccountKey={KEY}"
    config.save()
    config.auth, config.account_url = "sas", f"https://127.0.0.1:{trap.getsockname()[1]}"

    with pytest.raises(actions.VaultActionError, match="Changing the authentication requires re-entering"):
        actions.save_settings(None, config)
    with pytest.raises(actions.VaultActionError, match="Changing the authentication requires re-entering"):
        actions.check_vault(config)
    assert nobody_called(trap)
    assert VaultSettings.current().auth == "connection_string"


def test_the_command_line_obeys_the_https_rule(settings, monkeypatch):
    settings.VAULT_ALLOW_HTTP_EMULATOR = False
    with pytest.raises(CommandError, match="must start with https://"):
        call_command(
            "vault", "configure", "--azure-account-url", "http://backups.blob.core.windows.net", stdout=io.StringIO()
        )
    assert VaultSettings.current().kind == "none"


def test_the_same_endpoint_keeps_the_stored_secret(key_vault):
    key_vault.container, key_vault.upload_threads = "other", 8

    actions.save_settings(None, key_vault)

    saved = VaultSettings.current()
    assert saved.secret == KEY and saved.upload_threads == 8
    assert "secret" not in AuditEntry.objects.get(action="vault.settings").details["changes"]
