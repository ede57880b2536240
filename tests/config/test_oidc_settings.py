"""The Entra ID sign-in's settings from the environment: off unless OIDC_CLIENT_ID is set, then every
mistake one line naming the variable; TLS verified against the system's CAs or OIDC_CA_FILE."""

from __future__ import annotations

import pytest

from config.env import ConfigError
from config.oidc import read_entra_id

TENANT = "0f8e2d4c-6b1a-4c3e-9d5f-7a8b9c0d1e2f"


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in (
        "OIDC_CLIENT_ID",
        "OIDC_ISSUER",
        "ENTRA_TENANT_ID",
        "OIDC_CLIENT_SECRET",
        "OIDC_CLIENT_SECRET_FILE",
        "OIDC_CLIENT_CERTIFICATE_FILE",
        "OIDC_CA_FILE",
        "OIDC_GROUPS_CLAIM",
        "OIDC_ROLES_CLAIM",
    ):
        monkeypatch.delenv(name, raising=False)


def test_it_is_off_without_a_client_id():
    assert read_entra_id() is None


def test_a_tenant_id_gives_entra_ids_issuer(monkeypatch):
    monkeypatch.setenv("OIDC_CLIENT_ID", "app")
    monkeypatch.setenv("ENTRA_TENANT_ID", TENANT)
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "s3cret")
    config = read_entra_id()
    assert config is not None
    assert config.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert (config.groups_claim, config.roles_claim, config.verify) == ("groups", "roles", True)
    assert "s3cret" not in repr(config)


def test_the_secret_can_come_from_a_file_and_the_ca_from_another(monkeypatch, tmp_path):
    (tmp_path / "secret").write_text("from-a-file\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("OIDC_CLIENT_ID", "app")
    monkeypatch.setenv("OIDC_ISSUER", "https://idp.corp.example/realm/")
    monkeypatch.setenv("OIDC_CLIENT_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("OIDC_CA_FILE", str(tmp_path / "ca.pem"))
    config = read_entra_id()
    assert config is not None
    assert (config.issuer, config.client_secret, config.verify) == (
        "https://idp.corp.example/realm",
        "from-a-file",
        str(tmp_path / "ca.pem"),
    )


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({}, "OIDC_CLIENT_ID is set: set ENTRA_TENANT_ID (or OIDC_ISSUER) too"),
        ({"ENTRA_TENANT_ID": "contoso.onmicrosoft.com"}, "ENTRA_TENANT_ID must be the tenant's id (a GUID)"),
        ({"OIDC_ISSUER": "http://idp.example"}, "OIDC_ISSUER must be an https:// URL without query"),
        (
            {"OIDC_ISSUER": "https://a.example", "ENTRA_TENANT_ID": TENANT},
            "set OIDC_ISSUER or ENTRA_TENANT_ID, not both",
        ),
        ({"ENTRA_TENANT_ID": TENANT, "OIDC_CLIENT_SECRET": ""}, "set one of OIDC_CLIENT_SECRET"),
        (
            {"ENTRA_TENANT_ID": TENANT, "OIDC_CLIENT_SECRET_FILE": "/nonexistent"},
            "OIDC_CLIENT_SECRET_FILE cannot be read",
        ),
        ({"ENTRA_TENANT_ID": TENANT, "OIDC_CLIENT_SECRET": "s", "OIDC_CA_FILE": "/nonexistent"}, "OIDC_CA_FILE"),
    ],
)
def test_each_mistake_is_one_line_naming_the_variable(monkeypatch, env, sentence):
    monkeypatch.setenv("OIDC_CLIENT_ID", "app")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        read_entra_id()
    assert str(refused.value).startswith(sentence)
