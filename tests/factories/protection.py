"""Protection for tests: groups over test inventories (rows only) or over a simulator registered as a
vCenter, and the backup lab (a simulator whose VMs have real NTFS and ext4 disks, protected)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from inventory import vcenter as vsphere
from inventory.models import Folder, VCenter, VirtualMachine
from inventory.sync import apply_inventory
from jobs.models import JobRun
from protection import actions
from protection.models import ProtectionGroup
from tests.factories.simulator import Spec, prod_spec
from tests.fixtures.vcsim import connect_to
from tools import diskimages
from tools.simulator import Simulator

POLICY = actions.default_policy_values()  # daily 22:00 UTC, application-consistent, 14 days, GFS 14/8/12/3


def _save_group(
    name: str, selection: actions.Selection, policy: dict[str, Any], description: str = ""
) -> ProtectionGroup:
    return actions.save_group(
        None, group=None, name=name, description=description, selection=selection, policy_values=policy
    )


def protect_folders(name: str, folders: list[Folder], *, description: str = "", **policy: Any) -> ProtectionGroup:
    """A protection group of these folders (and their subfolders), with POLICY changed by `policy`."""
    selection = actions.Selection(folder_ids=[folder.pk for folder in folders])
    return _save_group(name, selection, {**POLICY, **policy}, description)


def protect_vms(name: str, vms: list[VirtualMachine], policy: dict[str, Any] | None = None) -> ProtectionGroup:
    """A protection group of these VMs (one by one, no folders), with POLICY unless given; the VM
    objects are refreshed so `vm.protection_group` is set."""
    group = _save_group(name, actions.Selection(vm_ids=[vm.pk for vm in vms]), policy or POLICY)
    for vm in vms:
        vm.refresh_from_db()
    return group


def register_simulator(sim: Simulator, name: str = "lab") -> VCenter:
    """The simulator as a vCenter (its certificate pinned), its inventory synced."""
    vc = VCenter(name=name, host=sim.host, port=sim.port, username=sim.username, thumbprint=sim.thumbprint or "")
    vc.password = sim.password
    vc.save()
    with connect_to(sim) as conn:
        apply_inventory(vc, vsphere.fetch_inventory(conn))
    return vc


def protect_simulator(sim: Simulator, *, group_name: str = "Prod", **policy: Any) -> tuple[VCenter, ProtectionGroup]:
    """The simulator registered and synced, its folder "DC/Prod" protected with POLICY changed by `policy`."""
    vc = register_simulator(sim)
    return vc, protect_folders(group_name, [Folder.objects.get(path="DC/Prod")], **policy)


# The backup lab: win-01 with an NTFS system disk and an ext4 data disk, lnx-01 with one ext4 disk.
BACKUP_LAB_VMS = (
    {"name": "win-01", "disks_mb": [48, 40], "instance_uuid": "50000000-0000-0000-0000-00000000a001"},
    {"name": "lnx-01", "disks_mb": [40], "instance_uuid": "50000000-0000-0000-0000-00000000a002"},
)


class BackupLab(NamedTuple):
    sim: Simulator
    vc: VCenter
    group: ProtectionGroup
    images: dict[tuple[str, int], Path]  # (VM name, disk index) -> the image behind that disk


def backup_lab_spec(*, power_on: bool = False) -> Spec:
    """The backup lab's VMs in "DC/Prod", running if `power_on`."""
    return prod_spec(*({**vm, "power_on": True} if power_on else vm for vm in BACKUP_LAB_VMS))


def start_backup_lab(vcsim_factory: Callable[..., Simulator], settings: Any, tmp_path: Path) -> BackupLab:
    """The simulator (over TLS) with the backup lab's VMs, real NTFS/ext4 images on their disks,
    DC/Prod protected (one backup at a time), and the store under tmp_path."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(backup_lab_spec(), tls=True)
    images = {
        ("win-01", 0): diskimages.build_ntfs_disk(diskimages.sample_windows_tree(), size_mib=48),
        ("win-01", 1): diskimages.build_ext4_disk({"data.txt": "data disk\n"}, size_mib=40, label="data"),
        ("lnx-01", 0): diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40),
    }
    for (name, index), image in images.items():
        sim.upload_disk_image(name, index, image)
    vc, group = protect_simulator(sim, parallelism=1)
    return BackupLab(sim, vc, group, images)


def back_up(vm_name: str, run_worker: Callable[[], None], capture: Callable[..., Any]) -> JobRun:
    """Back this VM up now, as the page does, and run the job; `capture` is
    django_capture_on_commit_callbacks, so the job is queued."""
    vm = VirtualMachine.objects.get(name=vm_name)
    with capture(execute=True):
        (run,) = actions.backup_now(None, vm=vm)
    run_worker()
    run.refresh_from_db()
    return run


def padded_sha256(image: Path, capacity: int) -> str:
    """The digest of an image as a disk of `capacity` bytes holds it (zeros after its end)."""
    digest = hashlib.sha256(image.read_bytes())
    digest.update(bytes(capacity - image.stat().st_size))
    return digest.hexdigest()
