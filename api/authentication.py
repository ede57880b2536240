"""`Authorization: Token <key>` for the API, checked against accounts.ApiToken (hashed keys, expiry,
scope, revocation) in place of DRF's authtoken (plain keys at rest, one per user, no expiry).

A read-only token may only use safe methods: anything else is refused with 403 and a sentence, here,
for every view (no view can forget it by overriding its permission classes).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from accounts import tokens
from accounts.middleware import MUST_CHANGE_SENTENCE, must_change
from accounts.models import ApiToken

KEYWORD = "Token"


class ReadOnlyToken(exceptions.PermissionDenied):
    default_detail = (
        "This API token is read-only: it may only read (GET, HEAD, OPTIONS). "
        "Create a read-and-operate token to start or change anything."
    )


class ApiTokenAuthentication(BaseAuthentication):
    """The user of a valid token; `request.auth` is the ApiToken."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None  # not ours: the session (or nothing) decides
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: send 'Authorization: Token <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = tokens.token_for_key(key)
        if token is None:  # unknown, revoked, expired, or of a disabled user: the same answer
            raise exceptions.AuthenticationFailed("Invalid token.")
        if must_change(token.user_id):  # a reset password stops the user's scripts too, until they choose one
            raise exceptions.PermissionDenied(MUST_CHANGE_SENTENCE)
        if token.scope == ApiToken.Scope.READ and request.method not in SAFE_METHODS:
            raise ReadOnlyToken()
        tokens.note_use(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema's description of the token header (Swagger's "Authorize" button uses it)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (a key starts with `vmb_`); read-only tokens may only GET, HEAD and OPTIONS.",
        }
