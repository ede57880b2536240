"""The demo vCenter: the simulator with a small inventory whose disks hold real file systems.

`make run` calls `start_if_no_vcenter()`. The demo spec (tools/vcsim/demo.json) fixes every VM's
instance UUID, so the demo VMs keep their identity (and later their recovery points) across restarts
even though the simulator itself keeps nothing.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tools import diskimages
from tools.simulator import Simulator

DEMO_SPEC = Path(__file__).resolve().parent / "vcsim" / "demo.json"
DEMO_NAME = "Demo vCenter (simulator)"


def load_spec() -> dict[str, Any]:
    return json.loads(DEMO_SPEC.read_text(encoding="utf-8"))


def _set(tree: dict[str, Any], path: str, content: str) -> dict[str, Any]:
    """A copy of `tree` with one file replaced, so each VM's disk differs a little, as real ones do."""
    tree = copy.deepcopy(tree)
    node = tree
    *folders, name = path.split("/")
    for folder in folders:
        node = node.setdefault(folder, {})
    node[name] = content
    return tree


def disk_tree(vm: dict[str, Any], index: int) -> tuple[str, dict[str, Any]]:
    """The file system type and files of one demo disk: the system disk first, then data disks."""
    name = vm["name"]
    windows = vm.get("os") == "windows"
    if index == 0 and windows:
        return "ntfs", _set(diskimages.sample_windows_tree(), "Windows/System32/drivers/etc/hosts",
                            f"127.0.0.1 localhost\r\n127.0.1.1 {name}\r\n")  # fmt: skip
    if index == 0:
        return "ext4", _set(diskimages.sample_linux_tree(), "etc/hostname", f"{name}\n")
    data = {"README.txt": f"Data disk {index} of {name}\n", "exports": {f"report-{n}.csv": f"id,value\n{n},{n * n}\n"
                                                                          for n in range(1, 6)}}  # fmt: skip
    return ("ntfs" if windows else "ext4"), data


def build_disk(vm: dict[str, Any], index: int) -> Path:
    kind, tree = disk_tree(vm, index)
    size_mib = vm["disks_mb"][index]
    if kind == "ntfs":
        return diskimages.build_ntfs_disk(tree, size_mib=size_mib, label="System" if index == 0 else "Data")
    return diskimages.build_ext4_disk(tree, size_mib=size_mib, label="root" if index == 0 else "data")


def fill_disks(sim: Simulator, spec: dict[str, Any]) -> int:
    """Upload a real disk image behind every demo disk; returns how many disks were filled."""
    jobs = [
        (vm, index)
        for datacenter in spec["datacenters"]
        for folder in datacenter["folders"]
        for vm in folder["vms"]
        for index in range(len(vm["disks_mb"]))
    ]

    def fill(job: tuple[dict[str, Any], int]) -> None:
        vm, index = job
        sim.upload_disk_image(vm["name"], index, build_disk(vm, index))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(fill, jobs))
    return len(jobs)


def register(sim: Simulator) -> None:
    """Create or update the demo connection so it points at this simulator run."""
    from django.db import transaction

    from audit.actions import record
    from inventory.models import VCenter

    with transaction.atomic():
        vcenter = VCenter.objects.filter(name=DEMO_NAME).first() or VCenter(name=DEMO_NAME, is_simulator=True)
        created = vcenter.pk is None
        # HTTPS with the simulator's own certificate pinned: the demo is as secure as a real setup.
        vcenter.host, vcenter.port, vcenter.protocol = sim.host, sim.port, VCenter.Protocol.HTTPS
        vcenter.username, vcenter.password = sim.username, sim.password
        vcenter.verify_tls, vcenter.thumbprint = True, sim.thumbprint
        vcenter.save()
        if created:
            record(None, "vcenter.create", target=vcenter, details={"by": "make run", "simulator": True})


def start_if_no_vcenter(data_dir: Path, say: Callable[[str], None]) -> Simulator | None:
    """Start the demo simulator unless a real vCenter is configured."""
    from inventory.models import VCenter

    if VCenter.objects.filter(is_simulator=False).exists():
        return None
    spec = load_spec()
    workdir = data_dir / "vcsim"
    datastores = workdir / "datastores"
    shutil.rmtree(datastores, ignore_errors=True)  # the simulator keeps no state; start clean
    datastores.mkdir(parents=True)
    say("Starting the vCenter simulator with the demo inventory…")
    # A fresh password per run: the demo connection's stored secret is real and encrypted like any other.
    sim = Simulator.start(
        spec,
        workdir=workdir,
        datastore_dir=datastores,
        password=secrets.token_urlsafe(16),
        tls=True,
        # Kept in DATA_DIR, so the pinned thumbprint stays valid across restarts.
        tls_cert=workdir / "cert.pem",
        tls_key=workdir / "key.pem",
    )
    try:
        disks = fill_disks(sim, spec)
        register(sim)
    except BaseException:
        sim.stop()
        raise
    say(f"Demo vCenter at {sim.url}: {len(sim.vms())} VMs, {disks} disks with NTFS and ext4 file systems.")
    return sim
