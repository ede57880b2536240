"""The world the scope tests look at through every route, as alice (administrator), bob (restore
operator) and carol (auditor).

bob holds two grants: protection group "Group-G" and folder DC1/Branch. The VM "mover" was backed up
while in Group-G (point `g`), then moved to "Group-H" and backed up again (point `h`): bob may see
`g`, never `h`. "fin-01" (Finance, group "Group-F") is outside bob's grants altogether, and
"ghost-01" is a VM no grant covers and no point names. Jobs: one started by alice, one by bob, one by
the scheduler (no user). Every point holds the same real ext4 disk in the local store, catalogued.

Strings that must never reach bob are listed in `World.hidden_from_bob`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from alerts.models import Alert
from inventory.models import VCenter, VirtualMachine
from jobs.models import JobRun
from protection import actions as protection_actions
from protection.models import ProtectionGroup
from recovery.catalog.jobs import catalogue_vm
from recovery.models import Restore, RestoreGrant
from tests.factories.protection import POLICY, protect_vms
from tests.factories.recovery import LINUX, point_with_disks
from tests.inventory.factories import create_test_tree, create_test_vm
from tools import diskimages
from vault.models import RecoveryPoint

DISK = 2000  # the vCenter key of every point's one disk
VOLUME = 0  # its one partition


@dataclass
class World:
    vcenter: VCenter
    groups: dict[str, ProtectionGroup]
    vms: dict[str, VirtualMachine]
    points: dict[str, RecoveryPoint]
    jobs: dict[str, JobRun]
    restores: dict[str, Restore]
    grant: RestoreGrant
    alert: Alert
    hidden_from_bob: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """The personas' passwords are hashed on creation; the tests log in without them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _job(title: str, user: User | None, vm: VirtualMachine, status: str = JobRun.Status.RUNNING) -> JobRun:
    return JobRun.objects.create(
        kind="system.check",
        title=title,
        target_type="inventory.virtualmachine",
        target_id=str(vm.pk),
        target_label=vm.name,
        params={"marker": title},
        status=status,
        created_by=user,
        log=[{"t": "00:00:00", "level": "info", "msg": f"log line of {title}"}],
    )


def _restore(user: User, point: RecoveryPoint) -> Restore:
    return Restore.objects.create(
        requested_by=user,
        kind=Restore.Kind.FILES,
        status=Restore.Status.COMPLETED,
        vm=point.vm,
        point=point,
        vm_label=point.vm.name,
        point_label=f"{point.created:%Y-%m-%d %H:%M}",
        paths=["/etc/hostname"],
    )


def _move(vm: VirtualMachine, leaving: ProtectionGroup, keep: list[VirtualMachine], joining: str) -> ProtectionGroup:
    """Take `vm` out of `leaving` (which keeps `keep`) and into a new group `joining`, as an
    administrator edits the groups on the Protection page."""
    protection_actions.save_group(
        None,
        group=leaving,
        name=leaving.name,
        description="",
        selection=protection_actions.Selection(vm_ids=[v.pk for v in keep]),
        policy_values=POLICY,
    )
    return protect_vms(joining, [vm])


@pytest.fixture
def world(settings: Any, tmp_path: Path, admin: User, helpdesk: User, auditor: User) -> World:
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    vc = VCenter(name="vc-scope", host="127.0.0.1", port=9, username="backup@vsphere.local")
    vc.password = "s3cret-Passw0rd"  # port 9: a connection test is refused at once, never waits
    vc.save()
    folders = create_test_tree(vc, ["Prod", "Finance", "Branch"])
    vms = {
        name: create_test_vm(folders[folder], name)
        for name, folder in [
            ("mover", "Prod"),
            ("stay-01", "Prod"),
            ("fin-01", "Finance"),
            ("branch-01", "Branch"),
            ("ghost-01", "Finance"),
        ]
    }
    image = diskimages.build_ext4_disk(LINUX, size_mib=40)
    now = timezone.now()

    def point(name: str, group: ProtectionGroup | None, age_hours: int) -> RecoveryPoint:
        return point_with_disks(vms[name], group, {DISK: image}, now - dt.timedelta(hours=age_hours))

    group_g = protect_vms("Group-G", [vms["mover"], vms["stay-01"]])
    group_f = protect_vms("Group-F", [vms["fin-01"]])
    points = {"g": point("mover", group_g, 48), "stay": point("stay-01", group_g, 30)}
    group_h = _move(vms["mover"], group_g, [vms["stay-01"]], "Group-H")
    points |= {
        "h": point("mover", group_h, 2),
        "fin": point("fin-01", group_f, 5),
        "branch": point("branch-01", None, 6),
    }
    for name in ("mover", "stay-01", "fin-01", "branch-01"):
        catalogue_vm(None, vms[name].pk)  # as the job queued after each backup does: search reads it
    grant = RestoreGrant.objects.create(user=helpdesk, group=group_g)
    RestoreGrant.objects.create(user=helpdesk, folder=folders["Branch"])
    jobs = {
        "alice": _job("ALICE-JOB inventory check", admin, vms["fin-01"]),
        "bob": _job("BOB-JOB file restore", helpdesk, vms["mover"]),
        "system": _job("SYSTEM-JOB backup", None, vms["fin-01"], JobRun.Status.SUCCEEDED),
    }
    restores = {"bob": _restore(helpdesk, points["g"]), "alice": _restore(admin, points["fin"])}
    alert = Alert.objects.create(
        kind=Alert.Kind.FAILED_BACKUP,
        key=str(vms["fin-01"].pk),
        severity=Alert.Severity.CRITICAL,
        title="Backup of fin-01 failed",
        target_type="inventory.virtualmachine",
        target_id=str(vms["fin-01"].pk),
        target_label="fin-01",
        opened_at=now,
        last_seen_at=now,
    )
    for vm in vms.values():
        vm.refresh_from_db()
    hidden = ["fin-01", "ghost-01", "ALICE-JOB", "SYSTEM-JOB", str(points["h"].pk), str(points["fin"].pk)]
    hidden += [str(jobs["alice"].pk), str(jobs["system"].pk)]
    return World(vc, {"G": group_g, "H": group_h, "F": group_f}, vms, points, jobs, restores, grant, alert, hidden)
