"""Sign-in with Microsoft Entra ID (OpenID Connect) as configured in the environment (README "Entra ID sign-in").

Nothing is configured unless OIDC_CLIENT_ID is set; then the issuer (OIDC_ISSUER, or ENTRA_TENANT_ID for
Entra ID's own https://login.microsoftonline.com/TENANT/v2.0) and a client secret or certificate are
required, and each mistake stops the process with one line naming the variable (config.env.ConfigError).
The provider's endpoints are discovered from the issuer at first use (teams.oidc), not here: a setting
never waits on the network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from config.env import ConfigError, env_str
from lib.oidc import EntraIdSettings

ENTRA_AUTHORITY = "https://login.microsoftonline.com"
_TENANT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _secret(name: str) -> str:
    if os.environ.get(name):
        return os.environ[name]
    if os.environ.get(f"{name}_FILE"):
        try:
            return Path(os.environ[f"{name}_FILE"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return ""


def _readable(name: str) -> str:
    path = env_str(name, "")
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={path} cannot be read")
    return path


def _issuer() -> str:
    issuer = env_str("OIDC_ISSUER", "").rstrip("/")
    tenant = env_str("ENTRA_TENANT_ID", "")
    if issuer and tenant:
        raise ConfigError("set OIDC_ISSUER or ENTRA_TENANT_ID, not both")
    if tenant:
        if not _TENANT.match(tenant):
            # A domain name would do for the endpoints, but the ID tokens' issuer names the tenant by its id.
            raise ConfigError(f"ENTRA_TENANT_ID must be the tenant's id (a GUID), not {tenant!r}")
        return f"{ENTRA_AUTHORITY}/{tenant.lower()}/v2.0"  # as Entra ID writes it in the ID tokens' `iss`
    if not issuer:
        raise ConfigError("OIDC_CLIENT_ID is set: set ENTRA_TENANT_ID (or OIDC_ISSUER) too")
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"OIDC_ISSUER must be an https:// URL without query, not {issuer!r}")
    return issuer


def read_entra_id() -> EntraIdSettings | None:
    """The Entra ID sign-in's settings, or None when OIDC_CLIENT_ID is not set."""
    client_id = env_str("OIDC_CLIENT_ID", "")
    if not client_id:
        return None
    issuer = _issuer()
    secret = _secret("OIDC_CLIENT_SECRET")
    certificate = _readable("OIDC_CLIENT_CERTIFICATE_FILE")
    if bool(secret) == bool(certificate):
        raise ConfigError("set one of OIDC_CLIENT_SECRET (or OIDC_CLIENT_SECRET_FILE) and OIDC_CLIENT_CERTIFICATE_FILE")
    return EntraIdSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=secret,
        certificate_file=certificate,
        groups_claim=env_str("OIDC_GROUPS_CLAIM", "groups"),
        roles_claim=env_str("OIDC_ROLES_CLAIM", "roles"),
        ca_file=_readable("OIDC_CA_FILE"),
    )
