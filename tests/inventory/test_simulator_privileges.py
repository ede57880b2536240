"""The simulator's users and privileges (tools/vcsim/privileges.go) behave as vCenter documents them,
so that a client's check of its own rights can be tested: more than one user signs in, permissions
set on entities decide the privileges (the most specific one wins), and principals are named as
vCenter names SSO users. No database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyVmomi import vim, vmodl

from inventory import vcenter
from tests.factories.simulator import one_datacenter
from tests.factories.vcenter_roles import CLOUDADMIN, CLOUDADMIN_PASSWORD, CLOUDADMIN_PRINCIPAL, grant_role
from tests.fixtures.vcsim import connect_to, simulator_for_module
from tools.simulator import Simulator

SPEC = one_datacenter({"": [{"name": "vm-01", "disks_mb": [1]}]}, datastores=("ds1",))
OPERATOR, OPERATOR_PASSWORD = "operator", "0perator-Pa55-w7"  # a name without a domain: its own principal

sim = simulator_for_module(SPEC, extra_users={CLOUDADMIN: CLOUDADMIN_PASSWORD, OPERATOR: OPERATOR_PASSWORD})


@pytest.fixture
def admin(sim: Simulator) -> Iterator[vcenter.Connection]:
    with connect_to(sim) as conn:
        yield conn


def manager(conn: vcenter.Connection) -> vim.AuthorizationManager:
    assert conn.content.authorizationManager is not None
    return conn.content.authorizationManager


def user_of(conn: vcenter.Connection) -> vim.UserSession:
    assert conn.content.sessionManager is not None
    session = conn.content.sessionManager.currentSession
    assert session is not None
    return session


def test_each_configured_user_signs_in_under_vcenters_principal_name_and_no_one_else(sim: Simulator) -> None:
    with connect_to(sim, username=CLOUDADMIN, password=CLOUDADMIN_PASSWORD) as conn:
        assert user_of(conn).userName == CLOUDADMIN_PRINCIPAL
    with connect_to(sim, username=OPERATOR, password=OPERATOR_PASSWORD) as conn:
        assert user_of(conn).userName == OPERATOR
    with connect_to(sim) as conn:
        assert user_of(conn).userName == sim.username
    for username, password in ((CLOUDADMIN, OPERATOR_PASSWORD), ("stranger@vsphere.local", CLOUDADMIN_PASSWORD)):
        with pytest.raises(vcenter.BadCredentials):
            connect_to(sim, username=username, password=password)


def test_the_default_user_is_admin_on_the_root_folder(sim: Simulator, admin: vcenter.Connection) -> None:
    root = admin.content.rootFolder
    mine = [p for p in manager(admin).RetrieveEntityPermissions(entity=root, inherited=False) if p.principal == "user"]
    assert [(p.roleId, p.propagate, p.group) for p in mine] == [(-1, True, False)]
    session = user_of(admin)
    assert manager(admin).HasPrivilegeOnEntity(entity=root, sessionId=session.key, privId=["Host.Config.Storage"]) == [
        True
    ]


def test_permissions_decide_privileges_and_the_most_specific_wins(sim: Simulator, admin: vcenter.Connection) -> None:
    datacenter = admin.content.rootFolder.childEntity[0]
    host = datacenter.hostFolder.childEntity[0].host[0]
    authz = manager(admin)
    assert authz.FetchUserPrivilegeOnEntities(entities=[host], userName=OPERATOR)[0].privileges == []

    grant_role(sim, OPERATOR, "Power", ["VirtualMachine.Interact.PowerOn"])  # on the root folder
    # On the datacenter, not propagating: it applies to the datacenter itself only.
    storage = grant_role(sim, OPERATOR, "Storage", ["Host.Config.Storage"], (vim.Datacenter, datacenter._moId))
    permission = vim.AuthorizationManager.Permission(principal=OPERATOR, group=False, roleId=storage, propagate=False)
    authz.SetEntityPermissions(entity=datacenter, permission=[permission])

    wanted = ["Host.Config.Storage", "VirtualMachine.Interact.PowerOn"]
    answers = authz.HasUserPrivilegeOnEntities(entities=[datacenter, host], userName=OPERATOR, privId=wanted)
    granted = {a.entity._moId: {p.privId: p.isGranted for p in a.privAvailability} for a in answers}
    assert granted[datacenter._moId] == {"Host.Config.Storage": True, "VirtualMachine.Interact.PowerOn": False}
    assert granted[host._moId] == {"Host.Config.Storage": False, "VirtualMachine.Interact.PowerOn": True}
    with connect_to(sim, username=OPERATOR, password=OPERATOR_PASSWORD) as conn:
        key = user_of(conn).key
        assert manager(conn).HasPrivilegeOnEntity(entity=host, sessionId=key, privId=wanted) == [False, True]


def test_setting_permissions_keeps_other_principals_and_refuses_unknown_ones(
    sim: Simulator, admin: vcenter.Connection
) -> None:
    folder = admin.content.rootFolder.childEntity[0].vmFolder
    authz = manager(admin)
    grant_role(sim, CLOUDADMIN, "ReadOnly", [], (vim.Folder, folder._moId))
    grant_role(sim, OPERATOR, "ReadOnly", [], (vim.Folder, folder._moId))
    grant_role(sim, CLOUDADMIN, "Admin", [], (vim.Folder, folder._moId))  # replaces CloudAdmin's only
    on_folder = {p.principal: p.roleId for p in authz.RetrieveEntityPermissions(entity=folder, inherited=False)}
    assert on_folder == {CLOUDADMIN_PRINCIPAL: -1, OPERATOR: -2}

    stranger = vim.AuthorizationManager.Permission(principal="stranger", group=False, roleId=-2, propagate=True)
    with pytest.raises(vim.fault.UserNotFound):
        authz.SetEntityPermissions(entity=folder, permission=[stranger])
    no_role = vim.AuthorizationManager.Permission(principal=OPERATOR, group=False, roleId=4242, propagate=True)
    with pytest.raises(vim.fault.NotFound):
        authz.SetEntityPermissions(entity=folder, permission=[no_role])
    with pytest.raises(vmodl.fault.InvalidArgument):
        authz.HasPrivilegeOnEntities(entity=[folder], sessionId="no-such-session", privId=["System.View"])
