"""The Recovery page lists VMs with recovery points, for the roles that may see them."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from recovery.models import RestoreGrant
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db


def test_vms_with_points_are_listed_for_granted_helpdesk_and_auditors_only(
    helpdesk, as_helpdesk, as_auditor, as_norole
):
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    RestoreGrant.objects.create(user=helpdesk, folder=folders["Prod"])
    vm = create_test_vm(folders["Prod"], "<i>web</i>")
    create_test_vm(folders["Prod"], "never-backed-up")
    RecoveryPoint.objects.create(vm=vm, created=timezone.now(), completed=timezone.now(), consistency="crash")
    for client in (as_helpdesk, as_auditor):
        body = client.get(reverse("recovery:index")).content.decode()
        assert "&lt;i&gt;web&lt;/i&gt;" in body and "never-backed-up" not in body
    assert as_norole.get(reverse("recovery:index")).status_code == 403
