"""Audit entries for what happens outside the product's own actions: logins, logouts and role
changes (a user's groups, however they were changed).

A failed login is *not* an audit row: anyone can send wrong passwords without signing in, so one
row per attempt would let them fill the audit table. It is a line in the application log (the user
name tried and the client's address, never the password: Django passes the credentials with the
password masked, and only the user name is read from them); the audit trail gets one row when the
sign-in throttle locks an account (accounts/signin.py, "user.locked_out").
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.actions import SYSTEM_ACTOR, record

logger = logging.getLogger("audit.sign_in")


def client_address(request: HttpRequest | None) -> dict[str, str]:
    """The peer address; X-Forwarded-For as well when a proxy sent one (kept apart: a client can forge it)."""
    if request is None:
        return {}
    found = {"ip": request.META.get("REMOTE_ADDR", "")}
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        found["forwarded_for"] = forwarded[:200]
    return {k: v for k, v in found.items() if v}


@receiver(user_logged_in, dispatch_uid="audit.login")
def on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record(user, "auth.login", target=user, details=client_address(request))


@receiver(user_logged_out, dispatch_uid="audit.logout")
def on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:  # logging out without a session is no event
        record(user, "auth.logout", target=user, details=client_address(request))


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any) -> None:
    field = get_user_model().USERNAME_FIELD
    tried = str(credentials.get(field) or credentials.get("username") or "")[:150]
    # %r: a user name is whatever the client typed; quoted and escaped, it cannot forge log lines.
    logger.warning("Failed sign-in for %r from %s", tried, client_address(request))


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="audit.roles")
def on_roles_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set | None, **kwargs: Any) -> None:
    """A user's roles changed: through `user.groups` or through `group.user_set`."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    verb = "added" if action == "post_add" else "removed"
    if reverse:  # instance is a group, pk_set users
        users = get_user_model().objects.filter(pk__in=pk_set or [])
        if action == "pre_clear":
            users = instance.user_set.all()
        for user in users:
            record(SYSTEM_ACTOR, "account.roles", target=user, details={verb: [instance.name]})
        return
    groups = instance.groups.all() if action == "pre_clear" else Group.objects.filter(pk__in=pk_set or [])
    names = sorted(g.name for g in groups)
    if names:
        record(SYSTEM_ACTOR, "account.roles", target=instance, details={verb: names})
