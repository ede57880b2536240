"""Permissions of the API: the same Django model permissions and `recovery.access` rules as the pages.

Views name the permission they need explicitly (`HasPerm.of("protection.backup_now")`), never a role.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission

from recovery import access
from vault.models import RecoveryPoint


class HasPerm(BasePermission):
    """The user holds one Django permission: `HasPerm.of("inventory.view_virtualmachine")` is the
    class to list in `permission_classes` (DRF instantiates each entry per request)."""

    perm: str

    @classmethod
    def of(cls, perm: str) -> type[HasPerm]:
        return type(f"HasPerm[{perm}]", (cls,), {"perm": perm})

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.has_perm(self.perm))


class SeesRecoveryPoints(BasePermission):
    """Administrators and auditors (every VM), or restore operators (the VMs granted to them):
    the same rule as the Recovery pages. Which points a user sees is `access.visible_points`."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and (access.sees_every_vm(user) or user.has_perm("recovery.browse_recoverypoints")))


def downloadable_point(user: Any, pk: Any) -> RecoveryPoint:
    """The point `pk` for a route that reads it out (zip, rehydrate): 404 when the user does not see
    it, 403 when they see it but may not restore files from its VM (as the pages answer)."""
    point = access.visible_points(user).select_related("vm").filter(pk=pk).first()
    if point is None:
        raise NotFound("No such recovery point, or not visible to you.")
    if not access.may_open(user, download=True):
        raise PermissionDenied
    return point
