"""The settings of the sign-in with Microsoft Entra ID (OpenID Connect), as config/oidc.py reads them from
the environment into settings.ENTRA_ID; teams.oidc and teams.oidc_backend use them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntraIdSettings:
    issuer: str
    client_id: str
    client_secret: str = ""  # a secret: never logged or rendered
    certificate_file: str = ""  # PEM holding the certificate and its private key (instead of a secret)
    groups_claim: str = "groups"
    roles_claim: str = "roles"
    ca_file: str = ""  # a private CA's bundle; without it the system's trust store

    @property
    def verify(self) -> str | bool:
        """What `requests` takes as `verify`: TLS is always verified, against the CA file when one is set."""
        return self.ca_file or True

    def __repr__(self) -> str:  # the secret stays out of tracebacks and debug pages
        return f"EntraIdSettings(issuer={self.issuer!r}, client_id={self.client_id!r})"
