"""A private OpenID Connect provider for the Entra ID sign-in tests: tools/oidc-provider/server.mjs
(panva's oidc-provider, pinned in its package-lock.json, installed by `make oidc-provider`) served
over HTTPS on 127.0.0.1 with a certificate of a certificate authority made for the run, so the
product verifies TLS against OIDC_CA_FILE exactly as it would against a private CA in production.

    provider = OidcProvider(tmp_path, redirect_uri="http://localhost:8000/oidc/callback/",
                            accounts={"ada": TestAccount(groups=["<group id>"])}).start()
    provider.issuer, provider.ca_file, provider.client_id, provider.client_secret
    provider.sign(claims)   # an ID token signed with the provider's own key, for the bad-token tests
    provider.stop()
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tools.services import ServiceError, _stop, _wait, child_process_options, free_port

DIRECTORY = Path(__file__).resolve().parent / "oidc-provider"
SERVER = DIRECTORY / "server.mjs"
INSTALLED = DIRECTORY / "node_modules" / "oidc-provider" / "package.json"
MINIMUM_NODE = (18, 19)  # Debian 12's and Ubuntu 24.04's nodejs; oidc-provider 8 supports Node 18 LTS
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test tenant's users, not a secret


@dataclass(frozen=True)
class TestAccount:
    """A user of the test tenant: the claims Entra ID would put in their ID token."""

    groups: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = ""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA (ca.pem) and a server certificate for `host` it signed (server.pem, server-key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("VM Backup test CA"))
        .issuer_name(_name("VM Backup test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def spki_hash(certificate: Path) -> str:
    """base64 SHA-256 of a certificate's public key: what Chromium's --ignore-certificate-errors-spki-list takes."""
    import base64

    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return base64.b64encode(digest.finalize()).decode()


@dataclass
class OidcProvider:
    directory: Path
    redirect_uri: str
    accounts: dict[str, TestAccount]
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Authenticate the client with a certificate (private_key_jwt, as Entra ID takes certificates) instead
    # of the secret: its PEM (certificate and key) is `client_certificate`.
    certificate_auth: bool = False
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)
    _key: Any = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}/{self.tenant_id}/v2.0"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def certificate(self) -> Path:
        return self.directory / "server.pem"

    def start(self) -> OidcProvider:
        if not INSTALLED.exists():
            raise ServiceError("oidc-provider is missing: run `make oidc-provider` (npm ci in tools/oidc-provider)")
        node = shutil.which("node")
        if not node:
            raise ServiceError("node is missing: install the Debian package nodejs")
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        if tuple(int(part) for part in version.lstrip("v").split(".")[:2]) < MINIMUM_NODE:
            raise ServiceError(f"oidc-provider needs Node.js 18.19 or later (Debian 12's nodejs), not {version}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        _, cert, key = make_ca_and_certificate(self.directory)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        config_file = self.directory / "oidc-provider.json"
        config_file.write_text(json.dumps(self._config(cert, key)))
        config_file.chmod(0o600)
        with open(self.directory / "oidc-provider.log", "ab") as log:
            self.process = subprocess.Popen(
                [node, str(SERVER), str(config_file)],
                cwd=DIRECTORY,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NODE_ENV": "production"},
                **child_process_options(),
            )
        _wait(self._answers, "oidc-provider", 30, self.process)
        return self

    def _config(self, cert: Path, key: Path) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return {
            "issuer": self.issuer,
            "port": self.port,
            "tls": {"cert": str(cert), "key": str(key)},
            "jwk": jwk,
            "cookie_key": secrets.token_urlsafe(32),
            "client": self._client(),
            "accounts": {name: self._account(name, account) for name, account in self.accounts.items()},
        }

    @property
    def client_certificate(self) -> Path:
        return self.directory / "client.pem"

    def _client(self) -> dict[str, Any]:
        client: dict[str, Any] = {"client_id": self.client_id, "redirect_uris": [self.redirect_uri]}
        if not self.certificate_auth:
            return {**client, "client_secret": self.client_secret}
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"VM Backup {self.client_id}"))
            .issuer_name(_name(f"VM Backup {self.client_id}"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.client_certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + pem)
        self.client_certificate.chmod(0o600)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {**client, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [public]}}

    def _account(self, name: str, account: TestAccount) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "oid": account.oid,
            "tid": self.tenant_id,
            "preferred_username": f"{name}@contoso.example",
            "name": account.name or name.title(),
            "email": f"{name}@contoso.example",
        }
        if account.groups:
            claims["groups"] = account.groups
        if account.roles:
            claims["roles"] = account.roles
        return {"password": PASSWORD, "claims": claims}

    @property
    def kid(self) -> str:
        return "test-signing-key"

    def sign(self, claims: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
        """An RS256 ID token with these claims, signed with the provider's key unless `key` is given."""
        return jwt.encode(claims, key or self._key, algorithm="RS256", headers={"kid": kid or self.kid})

    def _answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            url = f"{self.issuer}/.well-known/openid-configuration"  # https, built here
            with urlopen(url, context=context, timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.process)
