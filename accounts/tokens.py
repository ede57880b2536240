"""API tokens: created, listed, checked and revoked here only; creation and revocation audited.

A key is `vmb_` followed by 43 random URL-safe characters (secrets.token_urlsafe(32), 256 bits). Only
its SHA-256 is stored: a database dump gives no usable key, and the key is returned to the caller once.
A plain hash (no salt, no slow KDF) is enough because the key is random and long, not a password;
it also lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiToken
from audit.actions import record

KEY_PREFIX = "vmb_"
# The key's first characters kept in clear to tell tokens apart in lists ("vmb_" + 4 random ones).
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 4
# Every token expires (only keys migrated from before tokens had an expiry lack one): 90 days unless
# told, at most ten years.
DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 3650
# last_used is written at most this often per token: a script polling every second must not cost an
# UPDATE per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MANAGE_OTHERS = "auth.change_user"


class TokenRefused(Exception):
    """The token cannot be created or revoked; the message says why and nothing changed."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def may_manage(actor: Any, user: Any) -> bool:
    """A person manages their own tokens; an administrator (may change users) everybody's.
    An automatic actor (a string such as the command line's, or None for the system) may do anything."""
    if actor is None or isinstance(actor, str):
        return True
    return bool(actor.is_authenticated and (actor.pk == user.pk or actor.has_perm(MANAGE_OTHERS)))


def create_token(
    actor: Any, user: Any, name: str, scope: str = ApiToken.Scope.READ, expires_in_days: int = DEFAULT_EXPIRY_DAYS
) -> tuple[ApiToken, str]:
    """A new token for `user` and its key, which is returned here once and never again."""
    name = name.strip()
    if not may_manage(actor, user):
        raise TokenRefused("You may only create tokens for yourself.")
    if not user.is_active:
        raise TokenRefused(f"{user.get_username()} is not active.")
    if not name:
        raise TokenRefused("A token needs a name (what uses it: a script, a monitoring system).")
    if scope not in ApiToken.Scope.values:
        raise TokenRefused(f"The scope must be one of {', '.join(ApiToken.Scope.values)}, not {scope!r}.")
    if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise TokenRefused(f"A token expires in 1 to {MAX_EXPIRY_DAYS} days.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires = timezone.now() + timedelta(days=expires_in_days)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=key[:SHOWN_PREFIX_LENGTH],
            key_hash=hash_key(key),
            scope=scope,
            expires=expires,
        )
        record(actor, "api.token_create", target=token, details=_details(token))
    return token, key


def revoke_token(actor: Any, token: ApiToken) -> None:
    """Revoke the token now (the row stays, for the lists and the audit trail's target)."""
    if not may_manage(actor, token.user):
        raise TokenRefused("You may only revoke your own tokens.")
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked is not None:
            raise TokenRefused(f"The token {locked.name!r} is revoked already.")
        locked.revoked = token.revoked = timezone.now()
        locked.save(update_fields=["revoked"])
        record(actor, "api.token_revoke", target=locked, details=_details(locked))


def tokens_of(user: Any) -> QuerySet[ApiToken]:
    """All the user's tokens, newest first, revoked and expired ones included (the lists say which)."""
    return ApiToken.objects.filter(user=user).order_by("-created")


def valid_tokens() -> QuerySet[ApiToken]:
    now = timezone.now()
    return ApiToken.objects.filter(revoked__isnull=True, user__is_active=True).filter(
        Q(expires__isnull=True) | Q(expires__gt=now)
    )


def token_for_key(key: str) -> ApiToken | None:
    """The usable token with this key (not revoked, not expired, of an active user), or None."""
    if not key:
        return None
    return valid_tokens().select_related("user").filter(key_hash=hash_key(key)).first()


def note_use(token: ApiToken) -> None:
    """Record that the token was used now, at most once per LAST_USED_RESOLUTION."""
    now = timezone.now()
    if token.last_used is not None and now - token.last_used < LAST_USED_RESOLUTION:
        return
    # A filtered UPDATE: two requests at the same moment write once, and no row lock is held.
    stale = Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_RESOLUTION)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used=now)
    token.last_used = now


def state_of(token: ApiToken) -> str:
    """'active', 'expired' or 'revoked', for lists."""
    if token.revoked is not None:
        return "revoked"
    if token.expires is not None and token.expires <= timezone.now():
        return "expired"
    return "active"


def _details(token: ApiToken) -> dict[str, Any]:
    return {
        "user": token.user.get_username(),
        "name": token.name,
        "scope": token.scope,
        "expires": token.expires.isoformat() if token.expires else None,
    }
