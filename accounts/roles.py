"""The three roles of the product, as Django groups with permissions.

Views check permissions, never role names, so an administrator can also build custom
groups. The role definitions here are the single source of truth: `sync_role_groups`
runs after every migrate and makes the groups match.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

BACKUP_ADMIN = "Backup administrator"
RESTORE_OPERATOR = "Restore operator"
AUDITOR = "Auditor"

# The apps whose permissions make up the product; an administrator holds all of them.
PRODUCT_APPS = (
    "accounts",
    "audit",
    "jobs",
    "inventory",
    "protection",
    "vault",
    "recovery",
    "instant",
    "restore_tests",
    "alerts",
)

# Helpdesk: look at the recovery points of the VMs granted to them, restore files, follow their own
# jobs. No inventory permission: the Recovery page is their list of VMs (the inventory pages describe
# the whole estate), and no jobs.view_all_jobruns (they see the jobs they started).
RESTORE_OPERATOR_PERMS = (
    "jobs.view_jobrun",
    "recovery.browse_recoverypoints",
    "recovery.restore_files",
)

# Every view_* permission of the product, and nothing that changes anything.
AUDITOR_EXTRA_PERMS = ("audit.view_auditentry",)


def _perms(codenames: tuple[str, ...]) -> list[Permission]:
    query = Q(pk__in=[])
    for dotted in codenames:
        app_label, codename = dotted.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    return list(Permission.objects.filter(query))


def role_permissions() -> dict[str, list[Permission]]:
    product = Permission.objects.filter(content_type__app_label__in=PRODUCT_APPS)
    # Administrators also manage users and their roles.
    accounts = Permission.objects.filter(content_type__app_label="auth", content_type__model__in=["user", "group"])
    return {
        BACKUP_ADMIN: list(product) + list(accounts),
        RESTORE_OPERATOR: _perms(RESTORE_OPERATOR_PERMS),
        AUDITOR: list(product.filter(codename__startswith="view_")) + _perms(AUDITOR_EXTRA_PERMS),
    }


def sync_role_groups(**kwargs: Any) -> None:
    for name, perms in role_permissions().items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(perms)


def user_roles(user: Any) -> list[str]:
    if not user.is_authenticated:
        return []
    names = [g.name for g in user.groups.all()]
    if user.is_superuser and BACKUP_ADMIN not in names:
        names.insert(0, BACKUP_ADMIN)
    return names
