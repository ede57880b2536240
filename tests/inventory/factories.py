"""create_test_* helpers for inventory rows, for tests that need no simulator."""

from __future__ import annotations

import itertools
import uuid

from inventory.models import Datacenter, Folder, VCenter, VirtualDisk, VirtualMachine

_counter = itertools.count(1)


def create_test_vcenter(name: str = "vc1") -> VCenter:
    vc = VCenter(name=name, host=f"{name}.example.com", username="backup@vsphere.local")
    vc.password = "s3cret-Passw0rd"
    vc.save()
    return vc


def create_test_tree(vc: VCenter, paths: list[str], dc_name: str = "DC1") -> dict[str, Folder]:
    """Folders by path below a datacenter, e.g. ["Prod", "Prod/Web"]; the root is under key ""."""
    dc = Datacenter.objects.create(vcenter=vc, moref=f"datacenter-{next(_counter)}", name=dc_name)
    root = Folder.objects.create(
        vcenter=vc, moref=f"group-v{next(_counter)}", name="vm", datacenter=dc, path=dc_name, is_root=True
    )
    folders = {"": root}
    for path in sorted(paths):
        parent = folders[path.rpartition("/")[0]]
        folders[path] = Folder.objects.create(
            vcenter=vc,
            moref=f"group-v{next(_counter)}",
            name=path.rpartition("/")[2],
            datacenter=dc,
            parent=parent,
            path=f"{dc_name}/{path}",
        )
    return folders


def create_test_vm(folder: Folder, name: str, *, disks: int = 1, **fields) -> VirtualMachine:
    vm = VirtualMachine.objects.create(
        vcenter_id=folder.vcenter_id,
        instance_uuid=str(uuid.uuid4()),
        moref=f"vm-{next(_counter)}",
        name=name,
        datacenter_id=folder.datacenter_id,
        folder=folder,
        path=f"{folder.path}/{name}",
        power_state=fields.pop("power_state", "poweredOn"),
        **fields,
    )
    for n in range(disks):
        VirtualDisk.objects.create(
            vm=vm,
            key=2000 + n,
            label=f"Hard disk {n + 1}",
            capacity_bytes=(n + 1) * 1024**3,
            file_name=f"[ds1] {name}/{name}_{n}.vmdk",
            disk_mode="persistent",
            backing="flat",
            thin=True,
        )
    return vm
