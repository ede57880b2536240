"""Roles and grants of directory and Entra ID users, worked out from their groups at each sign-in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import Profile, profile_of
from accounts.roles import AUDITOR, BACKUP_ADMIN, RESTORE_OPERATOR
from audit.actions import record
from recovery.models import RestoreGrant
from teams.models import GroupMapping

ROLE_NAMES = (BACKUP_ADMIN, RESTORE_OPERATOR, AUDITOR)


@dataclass(frozen=True)
class Membership:
    roles: frozenset[str]
    grants: frozenset[tuple[str, int]]  # ("group", ProtectionGroup pk) or ("folder", Folder pk)

    @property
    def empty(self) -> bool:
        return not self.roles


def _key(source: str, external_group: str) -> str:
    # LDAP DNs are case-insensitive (CN=Helpdesk,... and cn=helpdesk,... name one group); Entra ids
    # are GUIDs or app role values, compared exactly.
    return external_group.strip().lower() if source == GroupMapping.Source.DIRECTORY else external_group.strip()


def membership_for(source: str, external_groups: Iterable[str]) -> Membership:
    """What the mappings of these groups give together."""
    wanted = {_key(source, g) for g in external_groups}
    roles: set[str] = set()
    grants: set[tuple[str, int]] = set()
    mappings = GroupMapping.objects.filter(source=source).select_related("role")
    for mapping in mappings.prefetch_related("grant_groups", "grant_folders"):
        if _key(source, mapping.external_group) not in wanted:
            continue
        if mapping.role is not None:
            roles.add(mapping.role.name)
        grants.update(("group", g.pk) for g in mapping.grant_groups.all())
        grants.update(("folder", f.pk) for f in mapping.grant_folders.all())
    return Membership(frozenset(roles), frozenset(grants))


def apply_external_groups(user: Any, source: str, external_groups: Iterable[str]) -> Membership:
    """Gives a directory or Entra ID user exactly the roles and grants their groups' mappings give,
    taking away what they no longer give. Audited when anything changed. The caller refuses the
    sign-in when the result is empty (no mapped group, no role)."""
    membership = membership_for(source, external_groups)
    with transaction.atomic():
        profile = profile_of(user)
        if profile.sign_in != source:
            profile.sign_in = source
            profile.save(update_fields=["sign_in"])
        before_roles = set(user.groups.values_list("name", flat=True))
        before_grants = {
            ("group", g.group_id) if g.group_id else ("folder", g.folder_id)
            for g in RestoreGrant.objects.filter(user=user)
        }
        user.groups.set(Group.objects.filter(name__in=membership.roles))
        if before_grants != membership.grants:
            RestoreGrant.objects.filter(user=user).delete()
            RestoreGrant.objects.bulk_create(
                RestoreGrant(user=user, **{f"{kind}_id": pk}) for kind, pk in sorted(membership.grants)
            )
        if before_roles != set(membership.roles) or before_grants != membership.grants:
            record(
                "directory" if source == Profile.SignIn.DIRECTORY else "entra-id",
                "user.groups_applied",
                target=user,
                details={
                    "source": source,
                    "roles": sorted(membership.roles),
                    "roles_before": sorted(before_roles),
                    "grants": len(membership.grants),
                },
            )
    return membership
