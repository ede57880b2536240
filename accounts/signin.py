"""The login page's form: every password sign-in (local accounts and directory/LDAP ones alike, since
the form calls `authenticate()` over all AUTHENTICATION_BACKENDS) goes through the throttle in
accounts.throttle, and the start of each lockout is audited once.

The client address is REMOTE_ADDR, or behind the reverse proxy (settings.BEHIND_PROXY) the last
X-Forwarded-For entry: the one our proxy appended, which the client cannot choose (earlier entries
are whatever the client sent).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.http import HttpRequest
from redis import Redis
from redis.exceptions import RedisError

from accounts.throttle import Lockout, SignInThrottle, minutes
from audit.actions import record

logger = logging.getLogger(__name__)

LOCKED_OUT = "Too many failed sign-ins for this account from your address; try again in {minutes} minute{s}."
THROTTLE_ACTOR = "sign-in throttle"


@cache
def _redis(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def sign_in_throttle() -> SignInThrottle:
    return SignInThrottle(
        _redis(settings.REDIS_URL),
        limit=settings.LOGIN_FAILURE_LIMIT,
        lockout_seconds=settings.LOGIN_LOCKOUT_MINUTES * 60,
    )


def client_address(request: HttpRequest) -> str:
    if getattr(settings, "BEHIND_PROXY", False):
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(request.META.get("REMOTE_ADDR", ""))


def locked_out_error(seconds: int) -> forms.ValidationError:
    left = minutes(seconds)
    return forms.ValidationError(LOCKED_OUT.format(minutes=left, s="" if left == 1 else "s"), code="locked_out")


def record_lockout(lockout: Lockout) -> None:
    """One audit row per lockout, and only for an account that exists: wrong user names cost the
    database nothing (they are logged, without the name typed)."""
    user = get_user_model().objects.filter(username__iexact=lockout.username).order_by("pk").first()
    if user is None:
        logger.warning(
            "Sign-in locked for %s after %d failures for an unknown user name", lockout.address, lockout.attempts
        )
        return
    with transaction.atomic():
        record(
            THROTTLE_ACTOR,
            "user.locked_out",
            target=user,
            target_label=user.get_username(),
            details={
                "address": lockout.address,
                "attempts": lockout.attempts,
                "minutes": minutes(lockout.seconds),
            },
        )
    logger.warning("Sign-in locked for %s from %s", user.get_username(), lockout.address)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing any password (right or wrong) while the account is locked for
    the client's address, and counting wrong ones."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if not username or not self.cleaned_data.get("password") or self.request is None:
            return super().clean()
        address = client_address(self.request)
        throttle: SignInThrottle | None = sign_in_throttle()
        try:
            seconds = throttle.locked_for(username, address) if throttle else 0
        except RedisError:
            # Redis down: the product's jobs are down too; signing in still works (to see why), unthrottled.
            logger.exception("Sign-in throttle unavailable (Redis); signing in without it")
            throttle, seconds = None, 0
        if seconds:
            raise locked_out_error(seconds)
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if throttle is not None and _wrong_password(error):
                self._count_failure(throttle, username, address)
            raise error
        if throttle is not None:
            self._forget_failures(throttle, username, address)
        return cleaned

    def _count_failure(self, throttle: SignInThrottle, username: str, address: str) -> None:
        try:
            lockout = throttle.failed(username, address)
        except RedisError:
            logger.exception("Sign-in throttle unavailable (Redis); failure not counted")
            return
        if lockout is not None:
            record_lockout(lockout)
            raise locked_out_error(lockout.seconds)

    def _forget_failures(self, throttle: SignInThrottle, username: str, address: str) -> None:
        try:
            throttle.succeeded(username, address)
        except RedisError:
            logger.exception("Sign-in throttle unavailable (Redis)")


def _wrong_password(error: forms.ValidationError) -> bool:
    """Django's "enter a correct username and password", as opposed to a refusal with its own
    sentence (an inactive account; the directory unreachable, or the person in no mapped group):
    only wrong passwords count towards a lockout."""
    return any(getattr(e, "code", None) == "invalid_login" for e in getattr(error, "error_list", [error]))
