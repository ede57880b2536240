"""API clients for the personas (each with a real token); an inventory with a group; recovery points
(rows only, and one with real NTFS and ext4 disks in the store)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recovery.models import RestoreGrant
from tests.factories.people import client_fixture, token_client
from tests.factories.protection import protect_folders, protect_vms
from tests.factories.recovery import LINUX, WINDOWS, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tools import diskimages
from vault.models import RecoveryPoint, RecoveryPointDisk


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """The personas' passwords are hashed on creation; the API never checks them, so hash them cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Clients with a real token, as each persona.
api_admin = client_fixture("admin", token_client)
api_helpdesk = client_fixture("helpdesk", token_client)
api_auditor = client_fixture("auditor", token_client)
api_norole = client_fixture("norole", token_client)


@pytest.fixture
def inventory(db):
    """vc1 with DC1/Prod/Web, DC1/Prod/DB and DC1/Dev; web-01/02 and db-01 in group "Prod"."""
    vc = create_test_vcenter()
    folders = create_test_tree(vc, ["Prod", "Prod/Web", "Prod/DB", "Dev"])
    vms = {
        "web-01": create_test_vm(folders["Prod/Web"], "web-01", disks=2),
        "web-02": create_test_vm(folders["Prod/Web"], "web-02", power_state="poweredOff"),
        "db-01": create_test_vm(folders["Prod/DB"], "db-01"),
        "dev-01": create_test_vm(folders["Dev"], "dev-01"),
        "dev-02": create_test_vm(folders["Dev"], "dev-02", do_not_protect=True),
    }
    group = protect_folders("Prod", [folders["Prod"]], description="Production")
    for vm in vms.values():
        vm.refresh_from_db()
    return {"vc": vc, "folders": folders, "vms": vms, "group": group}


def plain_point(vm, group, created, **fields) -> RecoveryPoint:
    """A point row without data in the store: enough for listing and visibility."""
    point = RecoveryPoint.objects.create(
        vm=vm, group=group, created=created, completed=created, consistency="crash", **fields
    )
    disk = {"label": "Hard disk 1", "capacity_bytes": 2**30, "file_name": "x.vmdk", "read_path": "full"}
    RecoveryPointDisk.objects.create(point=point, key=2000, read_reason="no CBT", **disk)
    return point


@pytest.fixture
def dev_group(inventory):
    return protect_vms("Dev", [inventory["vms"]["dev-01"]])


@pytest.fixture
def rows(inventory, dev_group, helpdesk):
    """Two points of web-01 (group Prod, granted to bob) and one of dev-01 (group Dev, not granted)."""
    now = timezone.now()
    vms, prod = inventory["vms"], inventory["group"]
    RestoreGrant.objects.create(user=helpdesk, group=prod)
    return {
        "old": plain_point(vms["web-01"], prod, now - timedelta(days=2), verified_at=now),
        "new": plain_point(
            vms["web-01"],
            prod,
            now - timedelta(hours=1),
            vault_status="replicated",
            vault_at=now,
            locked_until=now + timedelta(days=30),
        ),
        "dev": plain_point(vms["dev-01"], dev_group, now - timedelta(days=1), damaged=True, local=False),
    }


@pytest.fixture
def disks(settings, tmp_path, inventory, helpdesk):
    """web-01's point with a real NTFS (GPT) disk and a real ext4 (MBR) disk in the local store."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    RestoreGrant.objects.create(user=helpdesk, group=inventory["group"])
    ntfs = diskimages.build_ntfs_disk(WINDOWS, size_mib=48)
    ext4 = diskimages.build_ext4_disk(LINUX, size_mib=40)
    return point_with_disks(inventory["vms"]["web-01"], inventory["group"], {2000: ntfs, 2001: ext4}, timezone.now())
