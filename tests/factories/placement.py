"""Restores placed by inventory path: vcsim's default inventory (the cluster DC0_C0 and the standalone
host DC0_H0, each with a root pool "Resources") with lnx-01 (a real ext4 disk, two adapters on "VM
Network") protected, and what a test reads back from the simulator after a restore."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from inventory import vcenter as vsphere
from inventory.models import Folder, ResourcePool
from jobs.models import JobRun
from tests.factories.protection import protect_folders, register_simulator
from tests.fixtures.vcsim import connect_to
from tools import diskimages
from tools.simulator import Simulator, default_inventory_spec

LAB_VMS = [
    {"name": "lnx-01", "disks_mb": [40], "nics": ["VM Network", "VM Network"]},
    {"name": "spare-01", "disks_mb": [48]},
]
CLUSTER_POOL = "DC0/host/DC0_C0/Resources"
STANDALONE_POOL = "DC0/host/DC0_H0/Resources"
NEW_VM_PLACE = ["--folder", "DC0/vm/Prod", "--datastore", "DC0/datastore/LocalDS_0"]


def start_placement_lab(vcsim_factory: Any, settings: Any, tmp_path: Path) -> tuple[Simulator, Path]:
    """The simulator with LAB_VMS in DC0/Prod (protected) and lnx-01's disk image."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    sim = vcsim_factory(default_inventory_spec(LAB_VMS, folder="Prod"), tls=True)
    image = diskimages.build_ext4_disk(diskimages.sample_linux_tree(), size_mib=40)
    sim.upload_disk_image("lnx-01", 0, image)
    register_simulator(sim)
    protect_folders("Prod", [Folder.objects.get(path="DC0/Prod")], parallelism=1)
    return sim, image


def disk_sha256(sim: Simulator, moref: str, position: int, capacity: int) -> str:
    """The digest of a VM's disk (by position) as its flat file on the simulator's datastore holds it."""
    with connect_to(sim) as conn:
        disk = sorted(vsphere.vm_config(conn, moref)["disks"], key=lambda d: d["key"])[position]
    datastore, path = disk["file_name"][1:].split("] ", 1)
    flat = sim.datastore_dir("DC0", datastore) / path.replace(".vmdk", "-flat.vmdk")
    with flat.open("rb") as f:
        data = f.read(capacity)
    return hashlib.sha256(data + bytes(capacity - len(data))).hexdigest()


def adapters(sim: Simulator, moref: str) -> list[tuple[str, bool]]:
    """(network, connected at power-on) of each adapter of a VM, read back from vCenter."""
    with connect_to(sim) as conn:
        nics = vsphere.vm_config(conn, moref)["nics"]
    return [(nic["network"], bool(nic["start_connected"])) for nic in sorted(nics, key=lambda n: n["key"])]


def pool_of(sim: Simulator, moref: str) -> str:
    with connect_to(sim) as conn:
        [info] = vsphere.fetch_vms(conn, [moref])
    return ResourcePool.objects.get(moref=info.resource_pool_moref).inventory_path


def the_restore() -> JobRun:
    run = JobRun.objects.get(kind="recovery.restore_vm")
    assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
    return run
