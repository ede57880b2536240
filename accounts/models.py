"""Who a person is to the product beyond Django's user: how they sign in, and their API tokens.

Roles are Django groups (accounts.roles); grants are recovery.RestoreGrant.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """One per user, created on first need (`profile_of`)."""

    class SignIn(models.TextChoices):
        LOCAL = "local", "Local password"
        DIRECTORY = "directory", "Active Directory / LDAP"
        ENTRA = "entra", "Microsoft Entra ID"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    sign_in = models.CharField(max_length=16, choices=SignIn.choices, default=SignIn.LOCAL)
    # Set for a generated or reset password: the next sign-in must choose a new one before anything else.
    must_change_password = models.BooleanField(default=False)
    # The directory's name for the person (an LDAP DN, an Entra ID object id), for directory users.
    external_id = models.CharField(max_length=512, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_sign_in_display()})"


def profile_of(user: Any) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


class ApiToken(models.Model):
    """An API token, stored as its SHA-256 only: the key is shown once, when created."""

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        OPERATE = "operate", "Read and operate"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The key's first characters, shown in lists so a person can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"
