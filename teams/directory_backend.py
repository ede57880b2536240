"""Sign-in with Active Directory / LDAP: django-auth-ldap's backend, configured at each sign-in from
teams.directory (the Directory page or the LDAP_* environment), with roles and grants from the
directory groups' mappings (teams.mapping), worked out again at every sign-in.

A refusal that the person should read (no mapped group, directory unreachable, a local account of
the same name) is raised as `DirectorySignInRefused`, a ValidationError: Django's authenticate()
stops only PermissionDenied, so it reaches the login form, which shows its sentence. Wrong
passwords stay the login page's usual message.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import ldap
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, ldap_error

from accounts.models import Profile, profile_of
from teams.directory import DirectorySettings, auth_ldap_settings, current_settings, explain, groups_of
from teams.mapping import apply_external_groups

logger = logging.getLogger(__name__)

NO_ROLE = "Your directory account is in no group that has a role here; ask an administrator."
UNAVAILABLE = "The directory could not check your password just now; try again later or ask an administrator."
NAME_TAKEN = (
    "A local account already has this user name, so the directory cannot sign you in with it; ask an administrator."
)

# The LDAP errors django-auth-ldap reports (and swallows) during the current sign-in.
_errors: ContextVar[list[Exception] | None] = ContextVar("directory_errors", default=None)


class DirectorySignInRefused(ValidationError):
    """The directory account is known, or the directory failed, and the person should read why."""


class DirectoryBackend(LDAPBackend):
    """Never sets a local password (directory users get an unusable one); grants no permissions
    itself (roles are Django groups, read by ModelBackend)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        directory = current_settings()
        if directory is None or directory.problems() or not username or not password:
            return None
        self.settings = auth_ldap_settings(directory)
        errors: list[Exception] = []
        token = _errors.set(errors)
        try:
            user = super().authenticate(request, username=username, password=password, **kwargs)
            if user is not None:
                _mark_directory_user(user)
            group_dns = _groups(user, directory, errors)
        finally:
            _errors.reset(token)
        if errors:
            logger.warning("Directory sign-in of %r failed: %s", username, explain(errors[0], directory))
            raise DirectorySignInRefused(UNAVAILABLE)
        if user is None or not user.is_active:
            return None
        membership = apply_external_groups(user, Profile.SignIn.DIRECTORY, group_dns)
        if membership.empty:
            user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
            raise DirectorySignInRefused(NO_ROLE)
        return user

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and profile_of(user).sign_in != Profile.SignIn.DIRECTORY:
            # Never let a directory password open a local account (an administrator's, say).
            raise DirectorySignInRefused(NAME_TAKEN)
        return user, built

    # A signed-in user is a plain Django user: no directory round trip per request.
    def get_user(self, user_id: int) -> Any:
        return get_user_model().objects.filter(pk=user_id, is_active=True).first()

    def get_all_permissions(self, user: Any, obj: Any = None) -> set[str]:
        return set()

    def get_group_permissions(self, user: Any, obj: Any = None) -> set[str]:
        return set()


def _mark_directory_user(user: Any) -> None:
    """A directory user from their first sign-in on, whatever happens next: their DN, and no local
    password (a directory account must never sign in with one kept here)."""
    with transaction.atomic():
        profile = profile_of(user)
        if profile.sign_in != Profile.SignIn.DIRECTORY or profile.external_id != user.ldap_user.dn:
            profile.sign_in = Profile.SignIn.DIRECTORY
            profile.external_id = user.ldap_user.dn
            profile.save(update_fields=["sign_in", "external_id"])
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])


def _groups(user: Any, directory: DirectorySettings, errors: list[Exception]) -> list[str]:
    if user is None or not user.is_active or errors:
        return []
    try:
        return groups_of(user.ldap_user.connection, directory, user.ldap_user.dn)
    except ldap.LDAPError as exc:
        errors.append(exc)
        return []


@receiver(ldap_error, sender=DirectoryBackend, dispatch_uid="teams.directory_errors")
def _note_error(sender: Any, context: str, exception: Exception, **kwargs: Any) -> None:
    errors = _errors.get()
    if errors is not None:
        errors.append(exception)
