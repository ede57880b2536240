"""vSphere tags (inventory.vcenter.tag_vm, vms_with_tag) through vCenter's REST API, against the
simulator over HTTPS with its certificate pinned, as the product connects: the category and the tag
are created when missing, once, and the tag is attached to VMs and found on them again."""

from __future__ import annotations

import pytest

from inventory import vcenter
from inventory.vcenter.tags import _signed_in
from tests.factories.simulator import prod_spec
from tests.fixtures.vcsim import simulator_for_module
from tools.simulator import Simulator

SPEC = prod_spec(*({"name": f"tagged-{n:02}", "disks_mb": [1]} for n in range(1, 5)))

sim = simulator_for_module(SPEC, tls=True)


def moref(sim: Simulator, name: str) -> str:
    return str(sim.vm(name)["moref"])


def categories_named(conn: vcenter.Connection, name: str) -> list[dict[str, object]]:
    with _signed_in(conn) as rest:
        ids = rest.call("GET", "/tagging/category", "listing")
        found = [rest.call("GET", f"/tagging/category/id:{cid}", "reading") for cid in ids]
    return [c for c in found if c["name"] == name]


def test_tagging_a_vm_creates_the_category_for_vms_and_the_tag_and_attaches_it(
    sim: Simulator, conn: vcenter.Connection
) -> None:
    vm = moref(sim, "tagged-01")

    vcenter.tag_vm(conn, vm, "VM Backup", "restore-test")

    assert vcenter.vms_with_tag(conn, "VM Backup", "restore-test") == [vm]
    [category] = categories_named(conn, "VM Backup")
    assert category["cardinality"] == "MULTIPLE"
    assert category["associable_types"] == ["VirtualMachine"]


def test_tagging_again_and_more_vms_reuses_the_one_category_and_tag(sim: Simulator, conn: vcenter.Connection) -> None:
    first, second = moref(sim, "tagged-02"), moref(sim, "tagged-03")

    vcenter.tag_vm(conn, first, "Reused", "again")
    vcenter.tag_vm(conn, first, "Reused", "again")
    vcenter.tag_vm(conn, second, "Reused", "again")
    vcenter.tag_vm(conn, second, "Reused", "other")

    assert len(categories_named(conn, "Reused")) == 1
    assert vcenter.vms_with_tag(conn, "Reused", "again") == sorted([first, second])
    assert vcenter.vms_with_tag(conn, "Reused", "other") == [second]


def test_no_vm_carries_a_tag_or_category_that_does_not_exist(sim: Simulator, conn: vcenter.Connection) -> None:
    vcenter.tag_vm(conn, moref(sim, "tagged-04"), "Known", "used")

    assert vcenter.vms_with_tag(conn, "Known", "never-made") == []
    assert vcenter.vms_with_tag(conn, "Unknown", "used") == []


def test_a_rest_sign_in_with_a_wrong_password_is_bad_credentials(sim: Simulator, conn: vcenter.Connection) -> None:
    conn.credentials = (sim.username, "wrong")

    with pytest.raises(vcenter.BadCredentials, match="rejected the user name or password"):
        vcenter.tag_vm(conn, moref(sim, "tagged-01"), "VM Backup", "restore-test")


def test_the_rest_api_does_not_take_the_soap_session_cookie(sim: Simulator, conn: vcenter.Connection) -> None:
    # Why tags.py signs in on its own (vCenter answers the same).
    url = conn.base_url + "/rest/com/vmware/cis/tagging/category"
    resp = conn.pool.request("GET", url, headers={"Cookie": conn.cookie()})

    assert resp.status == 401
