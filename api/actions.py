"""API tokens: created, replaced and revoked here only, each audited in the same transaction.

The key is returned to the caller once and never logged, audited or shown again.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework.authtoken.models import Token

from audit.actions import record


class TokenRefused(Exception):
    """The token cannot be created (or revoked); the message says why and nothing changed."""


def create_token(actor: Any, user: Any, *, rotate: bool = False) -> str:
    """A new token for `user`, returned once. Refused when one exists, unless `rotate` replaces it."""
    if not user.is_active:
        raise TokenRefused(f"{user.get_username()} is not active.")
    with transaction.atomic():
        old = Token.objects.select_for_update().filter(user=user).first()
        if old is not None and not rotate:
            raise TokenRefused(
                f"{user.get_username()} has an API token already (since {old.created:%Y-%m-%d}): --rotate replaces it."
            )
        if old is not None:
            old.delete()
        token = Token.objects.create(user=user)
        record(actor, "api.token_rotate" if old else "api.token_create", target=user)
    return token.key


def revoke_token(actor: Any, user: Any) -> None:
    with transaction.atomic():
        deleted, _ = Token.objects.filter(user=user).delete()
        if not deleted:
            raise TokenRefused(f"{user.get_username()} has no API token.")
        record(actor, "api.token_revoke", target=user)
