"""Removing a vCenter whose VMs have recovery points: refused with one sentence from the page and the
command line (never a 500), and nothing is deleted or audited; without points it is still removed."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import AuditEntry
from inventory.models import VCenter, VirtualMachine
from tests.factories.protection import back_up, start_backup_lab
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db
REFUSAL = (
    "vCenter lab holds 1 recovery point of 1 VM; delete or let retention remove them before removing "
    "the vCenter. Nothing was changed."
)


@pytest.fixture
def lab(vcsim_factory, settings, tmp_path):
    return start_backup_lab(vcsim_factory, settings, tmp_path)


def test_a_vcenter_whose_vms_have_points_is_kept_by_the_page_and_the_command_with_a_sentence(
    lab, run_worker, django_capture_on_commit_callbacks, as_admin
):
    sim, vc, group, images = lab
    assert back_up("lnx-01", run_worker, django_capture_on_commit_callbacks).status == "succeeded"
    vms = VirtualMachine.objects.filter(vcenter=vc).count()

    response = as_admin.post(reverse("inventory:vcenter_remove", args=[vc.pk]), {"confirm": "lab"}, follow=True)

    assert response.status_code == 200
    assert REFUSAL in response.content.decode()
    with pytest.raises(CommandError) as refused:
        call_command("vcenter", "remove", "lab", stdout=io.StringIO())
    assert str(refused.value) == REFUSAL
    assert VCenter.objects.filter(pk=vc.pk).exists()
    assert VirtualMachine.objects.filter(vcenter=vc).count() == vms
    assert RecoveryPoint.objects.filter(vm__name="lnx-01").count() == 1
    assert not AuditEntry.objects.filter(action="vcenter.delete").exists()


def test_a_vcenter_without_points_is_still_removed_from_the_page(lab, as_admin):
    sim, vc, group, images = lab

    response = as_admin.post(reverse("inventory:vcenter_remove", args=[vc.pk]), {"confirm": "lab"})

    assert response.status_code == 302
    assert not VCenter.objects.exists() and not VirtualMachine.objects.exists()
    assert AuditEntry.objects.filter(action="vcenter.delete").count() == 1
