"""Roles and permissions on the simulator, set as a vCenter administrator sets them (through the
AuthorizationManager, signed in as the simulator's default user, who is Admin on the root folder).
Users other than the default one log in only when the simulator was started with them
(Simulator.start(extra_users=...)); until a permission is set here they have no privilege at all."""

from __future__ import annotations

from pyVmomi import vim

from tests.fixtures.vcsim import connect_to
from tools.simulator import Simulator

# The CloudAdmin role of Azure VMware Solution may lack host storage configuration.
CLOUDADMIN = "cloudadmin@vsphere.local"
CLOUDADMIN_PRINCIPAL = "VSPHERE.LOCAL\\cloudadmin"  # the user as vCenter names it
CLOUDADMIN_PASSWORD = "Cl0udAdmin-Pa55-x9"


def admin_privileges_except(sim: Simulator, *left_out: str) -> list[str]:
    """The Admin role's privileges without left_out."""
    with connect_to(sim) as conn:
        assert conn.content.authorizationManager is not None
        admin = next(r for r in conn.content.authorizationManager.roleList if r.name == "Admin")
        return [p for p in admin.privilege if p not in left_out]


def grant_role(
    sim: Simulator, login: str, role: str, privileges: list[str], entity: tuple[type, str] | None = None
) -> int:
    """Create the role (or find it by name) and give it to login on entity ((vim type, moref); the root
    folder when None), propagating to everything below; returns the role's id."""
    with connect_to(sim) as conn:
        manager = conn.content.authorizationManager
        assert manager is not None
        existing = [r.roleId for r in manager.roleList if r.name == role]
        role_id = existing[0] if existing else manager.AddAuthorizationRole(name=role, privIds=privileges)
        target = conn.content.rootFolder if entity is None else conn.ref(*entity)
        permission = vim.AuthorizationManager.Permission(principal=login, group=False, roleId=role_id, propagate=True)
        manager.SetEntityPermissions(entity=target, permission=[permission])
        return int(role_id)
