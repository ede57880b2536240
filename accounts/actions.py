"""Local users: created, given roles, disabled, enabled and given new passwords here only, each change
audited in its own transaction (page and command line alike).

A generated one-time password is returned to the caller once; it is never stored in clear, logged
or written to the audit log, and the user must choose their own at the next sign-in
(`Profile.must_change_password`, enforced by accounts.middleware).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Profile, profile_of
from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from audit.actions import record

ROLE_NAMES = (BACKUP_ADMIN, RESTORE_OPERATOR, AUDITOR)
# The roles as the command line names them.
ROLE_SLUGS = {"administrator": BACKUP_ADMIN, "restore-operator": RESTORE_OPERATOR, "auditor": AUDITOR}


class UserRefused(Exception):
    """The change cannot be made; the message says why, and nothing changed."""


@dataclass(frozen=True)
class NewPassword:
    """A user and the one-time password to hand them (None when they chose their own)."""

    user: Any
    one_time_password: str | None


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def _check_password(password: str, user: Any) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise UserRefused(" ".join(exc.messages)) from None


def _check_email(email: str) -> None:
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise UserRefused(f"{email!r} is not an e-mail address.") from None


def _roles(names: Iterable[str]) -> list[Group]:
    wanted = set(names)
    unknown = wanted - set(ROLE_NAMES)
    if unknown:
        raise UserRefused(f"No such role: {', '.join(sorted(unknown))} (roles: {', '.join(ROLE_NAMES)}).")
    return list(Group.objects.filter(name__in=wanted))


def _is_local(user: Any) -> bool:
    return profile_of(user).sign_in == Profile.SignIn.LOCAL


def _other_active_admins(user: Any) -> bool:
    User = get_user_model()
    return User.objects.filter(groups__name=BACKUP_ADMIN, is_active=True).exclude(pk=user.pk).exists()


def _is_admin(user: Any) -> bool:
    return user.is_active and user.groups.filter(name=BACKUP_ADMIN).exists()


def create_user(
    actor: Any, username: str, *, roles: Iterable[str], email: str = "", password: str | None = None
) -> NewPassword:
    """A local user with these roles. Without `password`, a one-time password is generated, returned
    once, and must be changed at the first sign-in."""
    User = get_user_model()
    username = username.strip()
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise UserRefused(" ".join(exc.messages)) from None
    _check_email(email)
    groups = _roles(roles)
    if not groups:
        raise UserRefused("Give the user a role.")
    one_time = password is None
    chosen = generate_password() if password is None else password
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise UserRefused(f"A user named {username!r} already exists.")
        user = User(username=username, email=email)
        if not one_time:
            _check_password(chosen, user)
        user.set_password(chosen)
        user.save()
        Profile.objects.create(user=user, sign_in=Profile.SignIn.LOCAL, must_change_password=one_time)
        user.groups.set(groups)
        record(
            actor,
            "user.create",
            target=user,
            details={
                "username": username,
                "email": email,
                "roles": sorted(g.name for g in groups),
                "password": "one-time" if one_time else "chosen",
            },
        )
    return NewPassword(user, chosen if one_time else None)


def set_roles(actor: Any, user: Any, roles: Iterable[str]) -> None:
    """Gives a local user exactly these roles (directory users get theirs from group mappings)."""
    groups = _roles(roles)
    if not _is_local(user):
        raise UserRefused(
            f"{user.get_username()} signs in through the directory: their roles come from its group mappings."
        )
    with transaction.atomic():
        before = sorted(user.groups.values_list("name", flat=True))
        after = sorted(g.name for g in groups)
        if BACKUP_ADMIN in before and BACKUP_ADMIN not in after and user.is_active and not _other_active_admins(user):
            raise UserRefused(f"{user.get_username()} is the last active administrator: make another one first.")
        if before == after:
            return
        user.groups.set(groups)
        record(actor, "user.roles", target=user, details={"roles": after, "roles_before": before})


def set_email(actor: Any, user: Any, email: str) -> None:
    _check_email(email)
    with transaction.atomic():
        if user.email == email:
            return
        before = user.email
        user.email = email
        user.save(update_fields=["email"])
        record(actor, "user.email", target=user, details={"email": email, "email_before": before})


def end_sessions(user: Any) -> int:
    """Deletes every session of `user` (they are signed out everywhere at once); how many there were."""
    stale = [
        s.pk
        for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if s.get_decoded().get(SESSION_KEY) == str(user.pk)
    ]
    Session.objects.filter(pk__in=stale).delete()
    return len(stale)


def disable_user(actor: Any, user: Any) -> None:
    """The user can no longer sign in; their sessions end and their API tokens are revoked at once."""
    if getattr(actor, "pk", None) == user.pk:
        raise UserRefused("You cannot disable your own account.")
    with transaction.atomic():
        if not user.is_active:
            return
        if _is_admin(user) and not _other_active_admins(user):
            raise UserRefused(f"{user.get_username()} is the last active administrator: make another one first.")
        user.is_active = False
        user.save(update_fields=["is_active"])
        sessions = end_sessions(user)
        tokens = ApiToken.objects.filter(user=user, revoked__isnull=True).update(revoked=timezone.now())
        record(actor, "user.disable", target=user, details={"sessions_ended": sessions, "tokens_revoked": tokens})


def enable_user(actor: Any, user: Any) -> None:
    """The user may sign in again (revoked API tokens stay revoked)."""
    with transaction.atomic():
        if user.is_active:
            return
        user.is_active = True
        user.save(update_fields=["is_active"])
        record(actor, "user.enable", target=user)


def reset_password(actor: Any, user: Any) -> str:
    """A new one-time password for a local user, returned once; their sessions end, and they must
    choose their own password at the next sign-in."""
    if getattr(actor, "pk", None) == user.pk:
        raise UserRefused("Change your own password on My account.")
    if not _is_local(user):
        raise UserRefused(f"{user.get_username()} signs in through the directory: their password is kept there.")
    password = generate_password()
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        Profile.objects.filter(user=user).update(must_change_password=True)
        sessions = end_sessions(user)
        record(actor, "user.password_reset", target=user, details={"sessions_ended": sessions})
    return password


def set_password(actor: Any, user: Any, password: str) -> None:
    """Sets a password chosen for the user (the command line's --password-stdin); validated."""
    if not _is_local(user):
        raise UserRefused(f"{user.get_username()} signs in through the directory: their password is kept there.")
    _check_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        Profile.objects.filter(user=user).update(must_change_password=False)
        record(actor, "user.password_set", target=user)


def change_own_password(user: Any, password: str) -> None:
    """The user chose a new password (the form checked the old one and validated the new one)."""
    if not _is_local(user):
        raise UserRefused("Your password is kept by the directory: change it there.")
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        Profile.objects.filter(user=user).update(must_change_password=False)
        record(user, "user.password_changed", target=user)
