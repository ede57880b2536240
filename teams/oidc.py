"""The door to the OpenID Connect provider (Microsoft Entra ID): discovery, signing keys, the client's
credentials, and the mozilla-django-oidc settings they answer.

Everything here talks to the provider over HTTPS with TLS verified (the system's trust store, or
OIDC_CA_FILE for a private CA); nothing else in the product does. Failures are `OidcUnavailable` with
a sentence for the login page.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from mozilla_django_oidc.utils import import_from_settings

from lib.oidc import EntraIdSettings

TIMEOUT = 10  # seconds for each call to the provider
METADATA_TTL = 3600  # discovery and keys are fetched again after an hour (Entra ID rolls its keys)
SCOPES = "openid profile email"


class OidcUnavailable(Exception):
    """The provider cannot be used now; the message is a sentence for the login page."""


def entra_id() -> EntraIdSettings | None:
    return getattr(settings, "ENTRA_ID", None)


def configured() -> EntraIdSettings:
    config = entra_id()
    if config is None:
        raise OidcUnavailable("Sign-in with Microsoft is not configured here.")
    return config


_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


@receiver(setting_changed, dispatch_uid="teams.oidc.forget")
def forget(**kwargs: Any) -> None:
    """Drop the discovered metadata and keys (a changed configuration, or a key the provider rolled)."""
    with _lock:
        _cache.clear()


def _get_json(url: str, what: str, config: EntraIdSettings) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=TIMEOUT, verify=config.verify)
        response.raise_for_status()
        document = response.json()
    except requests.exceptions.SSLError:
        raise OidcUnavailable(
            f"Sign-in with Microsoft is unavailable: the {what} at {url} has a certificate this server does not "
            "trust (OIDC_CA_FILE names a private CA)."
        ) from None
    except (requests.RequestException, ValueError) as exc:
        status = exc.response.status_code if isinstance(exc, requests.HTTPError) and exc.response is not None else 0
        reason = f"HTTP {status}" if status else type(exc).__name__
        raise OidcUnavailable(
            f"Sign-in with Microsoft is unavailable: the {what} at {url} did not answer ({reason})."
        ) from None
    if not isinstance(document, dict):
        raise OidcUnavailable(f"Sign-in with Microsoft is unavailable: the {what} at {url} is not a JSON object.")
    return document


def _cached(key: str, load: Any) -> dict[str, Any]:
    with _lock:
        found = _cache.get(key)
        if found and time.monotonic() - found[0] < METADATA_TTL:
            return found[1]
    value = load()
    with _lock:
        _cache[key] = (time.monotonic(), value)
    return value


def provider_metadata() -> dict[str, Any]:
    """The issuer's /.well-known/openid-configuration, checked to name the configured issuer."""
    config = configured()

    def load() -> dict[str, Any]:
        url = f"{config.issuer}/.well-known/openid-configuration"
        document = _get_json(url, "identity provider's discovery document", config)
        if document.get("issuer") != config.issuer:
            raise OidcUnavailable(
                f"Sign-in with Microsoft is unavailable: {url} names the issuer {document.get('issuer')!r}, "
                f"not {config.issuer!r}."
            )
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            raise OidcUnavailable(f"Sign-in with Microsoft is unavailable: {url} names no {', '.join(missing)}.")
        return document

    return _cached("metadata", load)


def signing_keys(refresh: bool = False) -> list[dict[str, Any]]:
    """The provider's published keys (JWKS); `refresh` fetches them again (a new key id seen in a token)."""
    config = configured()
    if refresh:
        with _lock:
            _cache.pop("jwks", None)
    url = provider_metadata()["jwks_uri"]
    keys = _cached("jwks", lambda: _get_json(url, "identity provider's key set", config)).get("keys")
    return keys if isinstance(keys, list) else []


def client_credentials(token_endpoint: str) -> dict[str, str]:
    """What the token request carries to authenticate this application: the client secret, or a client
    assertion signed with the certificate's key (private_key_jwt, as Entra ID takes certificates)."""
    config = configured()
    if config.client_secret:
        return {"client_id": config.client_id, "client_secret": config.client_secret}
    pem = Path(config.certificate_file).read_bytes()  # read each time: a renewed certificate applies at once
    key = serialization.load_pem_private_key(pem, password=None)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    now = int(time.time())
    assertion = jwt.encode(
        {
            "aud": token_endpoint,
            "iss": config.client_id,
            "sub": config.client_id,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        },
        key,  # type: ignore[arg-type]
        algorithm="RS256",
        headers={
            "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode(),  # noqa: S324 - Entra's thumbprint
            "x5t#S256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode(),
        },
    )
    return {
        "client_id": config.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def library_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, answered from ENTRA_ID and discovery instead of a dozen OIDC_* settings."""
    config = configured()
    if attr in _ENDPOINTS:
        return provider_metadata()[_ENDPOINTS[attr]]
    fixed: dict[str, Any] = {
        "OIDC_RP_CLIENT_ID": config.client_id,
        "OIDC_RP_SCOPES": SCOPES,
        "OIDC_RP_SIGN_ALGO": "RS256",
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_USE_NONCE": True,
        "OIDC_VERIFY_SSL": config.verify,
        "OIDC_TIMEOUT": TIMEOUT,
        "OIDC_AUTHENTICATION_CALLBACK_URL": "entra:callback",
        "OIDC_REDIRECT_FIELD_NAME": "next",
        "LOGIN_REDIRECT_URL_FAILURE": "login",
    }
    if attr in fixed:
        return fixed[attr]
    return import_from_settings(attr, *default)
