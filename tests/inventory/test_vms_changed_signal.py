"""Inventory announces changed VMs with `inventory.signals.vms_changed`; protection reacts by
refreshing group membership. Inventory never imports protection, yet a sync still refreshes
membership inside its own transaction, and the do-not-protect switch is protection's action."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from audit.models import AuditEntry
from inventory import vcenter
from inventory.models import VCenter, VirtualMachine
from inventory.signals import announce_vms_changed, vms_changed
from inventory.sync import apply_inventory
from protection.actions import set_do_not_protect
from protection.models import ProtectionGroup
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm


@dataclass
class Announcements:
    """What a receiver saw: each announcement's VM ids and actor, and whether a transaction was open."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, sender: Any, vm_ids: list[int], actor: Any = None, **kwargs: Any) -> None:
        self.calls.append(
            {"vm_ids": set(vm_ids), "actor": actor, "in_transaction": transaction.get_connection().in_atomic_block}
        )


@pytest.fixture
def announcements() -> Iterator[Announcements]:
    seen = Announcements()
    vms_changed.connect(seen, dispatch_uid="test.announcements")
    yield seen
    vms_changed.disconnect(dispatch_uid="test.announcements")


def _register(sim: Any) -> VCenter:
    vc = VCenter(name="sim", host=sim.host, port=sim.port, protocol="http", username=sim.username, verify_tls=False)
    vc.password = sim.password
    vc.save()
    return vc


@pytest.mark.django_db(transaction=True)
def test_a_full_sync_announces_every_vm_it_wrote_inside_its_own_transaction(vcsim, announcements):
    # transaction=True: no test-wide atomic block, so `in_transaction` is the sync's own transaction.
    vc = _register(vcsim)
    with vcenter.connect(
        vcenter.Endpoint(vcsim.host, vcsim.port, protocol="http"), vcsim.username, vcsim.password
    ) as conn:
        apply_inventory(vc, vcenter.fetch_inventory(conn))
    assert announcements.calls == [
        {
            "vm_ids": set(VirtualMachine.objects.filter(vcenter=vc).values_list("pk", flat=True)),
            "actor": None,
            "in_transaction": True,
        }
    ]


@pytest.mark.django_db
def test_an_announced_vm_in_a_selected_folder_joins_its_group_as_auto_detect():
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    group = ProtectionGroup.objects.create(name="Prod")
    group.folders.add(folders["Prod"])
    vm = create_test_vm(folders["Prod"], "web-01")
    assert announce_vms_changed([vm.pk]) == 1  # the count sync results report, from protection's receiver
    vm.refresh_from_db()
    assert vm.protection_group == group
    assert AuditEntry.objects.get(action="protection.vm_joined").actor_name == "auto-detect"


@pytest.mark.django_db
def test_marking_a_vm_do_not_protect_is_a_protection_action_audited_with_its_departure():
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    group = ProtectionGroup.objects.create(name="Prod")
    group.folders.add(folders["Prod"])
    vm = create_test_vm(folders["Prod"], "web-01", protection_group=group)
    admin = get_user_model().objects.create_user("alice")
    set_do_not_protect(admin, vm, True)
    vm.refresh_from_db()
    assert vm.do_not_protect and vm.protection_group is None
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", "actor_name"))
    assert actions == [("vm.do_not_protect", "alice"), ("protection.vm_left", "alice")]
