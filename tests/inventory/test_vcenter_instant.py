"""The vCenter side of instant recovery (inventory.vcenter.instant) against the simulator: a local
directory laid out as instant.view serves a recovery point (descriptor, flat extent, .vmx), mounted as
an NFS datastore, registered, powered on, moved to a production datastore, then removed."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVmomi import vim

from instant.view import layout
from inventory import vcenter
from inventory.vcenter import AlreadyExists, DatastoreUnreachable, InUse, NotFound
from inventory.vcenter.instant import FOLDER_PRIVILEGES, HOST_PRIVILEGES, POOL_PRIVILEGES, VM_PRIVILEGES
from inventory.vcenter.soap import read_one
from tests.factories.simulator import one_datacenter
from tests.factories.vcenter_roles import (
    CLOUDADMIN,
    CLOUDADMIN_PASSWORD,
    CLOUDADMIN_PRINCIPAL,
    admin_privileges_except,
    grant_role,
)
from tests.fixtures.vcsim import connect_to, simulator_for_module
from tools.simulator import Simulator

MiB = 1024 * 1024
SPEC = one_datacenter({"": [{"name": "anchor-vm", "disks_mb": [1], "nics": ["VM Network"]}]}, datastores=("ds1",))

NOBODY, NOBODY_PASSWORD = "nobody@vsphere.local", "N0body-Pa55-q2"  # signs in, has no permission

sim = simulator_for_module(SPEC, extra_users={CLOUDADMIN: CLOUDADMIN_PASSWORD, NOBODY: NOBODY_PASSWORD})


def placement(conn: vcenter.Connection, sim: Simulator) -> tuple[str, str, str]:
    """(host, VM folder, resource pool) of the spec's VM: where the recovered VM goes."""
    anchor = conn.ref(vim.VirtualMachine, sim.vm("anchor-vm")["moref"])
    props = read_one(conn, anchor, ["runtime.host", "parent", "resourcePool"])
    return props["runtime.host"]._moId, props["parent"]._moId, props["resourcePool"]._moId


def write_point(directory: Path, name: str, image: bytes) -> layout.DiskFiles:
    """What instant.view serves for a one-disk point: NAME.vmdk, NAME-flat.vmdk and NAME.vmx."""
    disk = layout.DiskFiles(key="2000", size=len(image), name=name)
    (directory / disk.descriptor_name).write_text(layout.descriptor(disk))
    (directory / disk.flat_name).write_bytes(image)
    meta = {
        "vm": name,
        "config": {
            "name": name,
            "num_cpu": 2,
            "memory_mb": 2048,
            "guest_id": "otherLinux64Guest",
            "nics": [{"network": "VM Network", "type": "VirtualVmxnet3"}],
        },
    }
    (directory / f"{name}.vmx").write_text(layout.vmx(meta, [disk]))
    return disk


@pytest.fixture
def point(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    directory = tmp_path / "view"
    directory.mkdir()
    image = os.urandom(3 * MiB) + bytes(MiB) + os.urandom(MiB // 2)  # a hole in the middle
    yield directory, image


def read_all(conn: vcenter.Connection, datastore: str, path: str) -> bytes:
    with vcenter.DatastoreFile(conn, "DC", datastore, path) as file:
        return vcenter.read_datastore_file(conn, "DC", datastore, path, 0, file.size)


def datastore_moref(conn: vcenter.Connection, name: str) -> str:
    datacenter = conn.content.rootFolder.childEntity[0]
    for ds in datacenter.datastore:
        if ds.name == name:
            return str(ds._moId)
    raise KeyError(name)


def test_recover_run_migrate_and_clean_up(sim: Simulator, conn: vcenter.Connection, point: tuple[Path, bytes]) -> None:
    directory, image = point
    write_point(directory, "web-01", image)
    host, folder, pool = placement(conn, sim)

    ds = vcenter.mount_nas_datastore(conn, host, "instant-web-01", "127.0.0.1", str(directory), read_only=False)
    assert ds.name == "instant-web-01"
    assert read_all(conn, ds.name, "web-01-flat.vmdk") == image
    descriptor = read_all(conn, ds.name, "web-01.vmdk").decode()
    assert 'VMFS "web-01-flat.vmdk"' in descriptor

    vm = vcenter.register_vm(conn, ds.name, "web-01.vmx", "web-01 (instant)", folder, pool, host)
    assert vm.name == "web-01 (instant)"
    assert vm.disk_files == ("[instant-web-01] web-01.vmdk",)
    props = read_one(
        conn,
        conn.ref(vim.VirtualMachine, vm.moref),
        ["config.hardware.numCPU", "config.hardware.memoryMB", "config.guestId", "config.hardware.device"],
    )
    assert (props["config.hardware.numCPU"], props["config.hardware.memoryMB"]) == (2, 2048)
    assert props["config.guestId"] == "otherLinux64Guest"
    devices = props["config.hardware.device"]
    (disk,) = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disk.capacityInBytes == len(image)
    nics = [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert [n.connectable.startConnected for n in nics if n.connectable] == [False]

    started = vcenter.power_on(conn, vm.moref)
    assert started.host_moref == host
    assert vcenter.power_state(conn, vm.moref) == "poweredOn"

    with pytest.raises(InUse, match="in use"):
        vcenter.unmount_datastore(conn, host, ds.moref)

    target = datastore_moref(conn, "ds1")
    moved = vcenter.relocate_disks(conn, vm.moref, target)
    (disk_file,) = moved.disk_files
    assert disk_file.startswith("[ds1] web-01 (instant)/")
    flat = disk_file.removeprefix("[ds1] ").removesuffix(".vmdk") + "-flat.vmdk"
    assert read_all(conn, "ds1", flat) == image
    assert vcenter.power_state(conn, vm.moref) == "poweredOn"
    on = read_one(conn, conn.ref(vim.Datastore, ds.moref), ["vm"]).get("vm", [])
    assert [v._moId for v in on] == []

    vcenter.unmount_datastore(conn, host, ds.moref)  # the VM runs from ds1 now
    assert not vcenter.datastore_exists(conn, ds.moref)
    vcenter.unmount_datastore(conn, host, ds.moref)  # nothing to do

    vcenter.power_off_and_unregister(conn, vm.moref)
    with pytest.raises(NotFound):
        vcenter.power_state(conn, vm.moref)
    vcenter.power_off_and_unregister(conn, vm.moref)  # nothing to do


def test_stop_unregisters_then_unmounts(sim: Simulator, conn: vcenter.Connection, point: tuple[Path, bytes]) -> None:
    directory, image = point
    write_point(directory, "db-01", image)
    host, folder, pool = placement(conn, sim)
    ds = vcenter.mount_nas_datastore(conn, host, "instant-db-01", "localhost", str(directory))
    vm = vcenter.register_vm(conn, ds.name, "db-01.vmx", "db-01", folder, pool, host)
    vcenter.power_on(conn, vm.moref)

    with pytest.raises(InUse, match="in use"):
        vcenter.unmount_datastore(conn, host, ds.moref)
    vcenter.power_off_and_unregister(conn, vm.moref)
    vcenter.unmount_datastore(conn, host, ds.moref)

    assert not vcenter.datastore_exists(conn, ds.moref)
    assert (directory / "db-01-flat.vmdk").read_bytes() == image  # the point's files are untouched
    # the same name can be mounted again
    again = vcenter.mount_nas_datastore(conn, host, "instant-db-01", "127.0.0.1", str(directory))
    vcenter.unmount_datastore(conn, host, again.moref)


def test_writes_through_the_datastore_land_in_the_directory(
    sim: Simulator, conn: vcenter.Connection, point: tuple[Path, bytes]
) -> None:
    directory, image = point
    write_point(directory, "app-01", image)
    host, _folder, _pool = placement(conn, sim)
    ds = vcenter.mount_nas_datastore(conn, host, "instant-app-01", "127.0.0.1", str(directory))
    with vcenter.DatastoreFile(conn, "DC", ds.name, "notes.txt") as file:
        file.write(io.BytesIO(b"hello"), 5)
    assert (directory / "notes.txt").read_bytes() == b"hello"
    vcenter.unmount_datastore(conn, host, ds.moref)

    read_only = vcenter.mount_nas_datastore(conn, host, "instant-app-ro", "127.0.0.1", str(directory), read_only=True)
    assert read_all(conn, read_only.name, "notes.txt") == b"hello"
    with (
        pytest.raises(vcenter.VCenterError, match="403"),
        vcenter.DatastoreFile(conn, "DC", read_only.name, "x") as file,
    ):
        file.write(io.BytesIO(b"no"), 2)
    assert not (directory / "x").exists()
    vcenter.unmount_datastore(conn, host, read_only.moref)


def test_refusals_are_one_sentence(sim: Simulator, conn: vcenter.Connection, point: tuple[Path, bytes]) -> None:
    directory, image = point
    write_point(directory, "x-01", image)
    host, folder, pool = placement(conn, sim)

    with pytest.raises(DatastoreUnreachable, match="could not mount the NFS export 192.0.2.1:"):
        vcenter.mount_nas_datastore(conn, host, "instant-far", "192.0.2.1", str(directory))
    with pytest.raises(DatastoreUnreachable):
        vcenter.mount_nas_datastore(conn, host, "instant-missing", "127.0.0.1", str(directory / "nope"))
    with pytest.raises(AlreadyExists, match="ds1"):
        vcenter.mount_nas_datastore(conn, host, "ds1", "127.0.0.1", str(directory))

    ds = vcenter.mount_nas_datastore(conn, host, "instant-x-01", "127.0.0.1", str(directory))
    with pytest.raises(NotFound):
        vcenter.register_vm(conn, ds.name, "missing.vmx", "x-01", folder, pool, host)
    vm = vcenter.register_vm(conn, ds.name, "x-01.vmx", "x-01", folder, pool, host)
    with pytest.raises(AlreadyExists):
        vcenter.register_vm(conn, ds.name, "x-01.vmx", "x-01 again", folder, pool, host)
    for error in (DatastoreUnreachable, AlreadyExists, NotFound, InUse):
        assert issubclass(error, vcenter.VCenterError)
    (directory / "other.txt").write_text("not the VM's")
    vcenter.destroy_vm(conn, vm.moref)  # deletes the VM's own files, as vSphere does, not the datastore's
    assert sorted(p.name for p in directory.iterdir()) == ["other.txt"]
    vcenter.unmount_datastore(conn, host, ds.moref)


def test_an_administrator_misses_no_privilege(sim: Simulator, conn: vcenter.Connection) -> None:
    host, folder, pool = placement(conn, sim)
    check = vcenter.missing_privileges(conn, host, folder, pool)
    assert check.privileges == ()
    assert check.sentence == ""
    assert vcenter.MissingPrivileges("admin", ("Host.Config.Storage",)).sentence.startswith(
        "the vCenter user admin lacks Host.Config.Storage"
    )


def test_a_role_without_host_storage_rights_misses_exactly_those(sim: Simulator, conn: vcenter.Connection) -> None:
    """As CloudAdmin on Azure VMware Solution may be: everything but host storage configuration, given
    on the root folder; then a more specific permission on the host's cluster wins below it."""
    host, folder, pool = placement(conn, sim)
    grant_role(sim, CLOUDADMIN, "CloudAdmin", admin_privileges_except(sim, "Host.Config.Storage"))

    with connect_to(sim, username=CLOUDADMIN, password=CLOUDADMIN_PASSWORD) as restricted:
        check = vcenter.missing_privileges(restricted, host, folder, pool)

    assert check.user == CLOUDADMIN_PRINCIPAL
    assert check.privileges == ("Host.Config.Storage",)
    assert check.sentence.startswith(f"the vCenter user {CLOUDADMIN_PRINCIPAL} lacks Host.Config.Storage, which")
    assert vcenter.missing_privileges(conn, host, folder, pool).privileges == ()  # the administrator's

    cluster = read_one(conn, conn.ref(vim.HostSystem, host), ["parent"])["parent"]._moId
    grant_role(sim, CLOUDADMIN, "Storage only", ["Host.Config.Storage"], (vim.ClusterComputeResource, cluster))
    with connect_to(sim, username=CLOUDADMIN, password=CLOUDADMIN_PASSWORD) as restricted:
        below = vcenter.missing_privileges(restricted, host, folder, pool)
    # On the host and the cluster's pool only storage now; the VM folder keeps the root folder's role.
    assert below.privileges == tuple(sorted(VM_PRIVILEGES + POOL_PRIVILEGES))
    assert "Host.Config.Storage" not in below.privileges and "VirtualMachine.Inventory.Register" not in below.privileges


def test_a_user_without_any_permission_misses_every_privilege(sim: Simulator, conn: vcenter.Connection) -> None:
    host, folder, pool = placement(conn, sim)
    with connect_to(sim, username=NOBODY, password=NOBODY_PASSWORD) as nobody:
        check = vcenter.missing_privileges(nobody, host, folder, pool)
    needed = HOST_PRIVILEGES + FOLDER_PRIVILEGES + POOL_PRIVILEGES + VM_PRIVILEGES
    assert check.privileges == tuple(sorted(needed))
    assert check.user == "VSPHERE.LOCAL\\nobody"


def test_sata_and_nvme_disks_and_an_unknown_network(
    sim: Simulator, conn: vcenter.Connection, point: tuple[Path, bytes]
) -> None:
    """A hand-written .vmx in a subfolder: a SATA and an NVMe disk, a NIC on a network the datacenter
    lacks (left out by the simulator), memory and CPUs as written."""
    directory, image = point
    vm_dir = directory / "legacy"
    vm_dir.mkdir()
    for name in ("a", "b"):
        disk = layout.DiskFiles(key=name, size=len(image), name=name)
        (vm_dir / disk.descriptor_name).write_text(layout.descriptor(disk))
        (vm_dir / disk.flat_name).write_bytes(image)
    (vm_dir / "legacy.vmx").write_text(
        'displayName = "legacy"\nnumvcpus = "4"\nMemSize = "512"\nguestOS = "ubuntu-64"\n'
        'sata0.present = "TRUE"\nsata0:0.present = "TRUE"\nsata0:0.fileName = "a.vmdk"\n'
        'nvme0.present = "TRUE"\nnvme0:0.present = "TRUE"\nnvme0:0.fileName = "b.vmdk"\n'
        'ethernet0.present = "TRUE"\nethernet0.networkName = "No Such Network"\n'
    )
    host, folder, pool = placement(conn, sim)
    ds = vcenter.mount_nas_datastore(conn, host, "instant-legacy", "127.0.0.1", str(directory))
    vm = vcenter.register_vm(conn, ds.name, "legacy/legacy.vmx", "legacy", folder, pool, host)
    assert vm.vmx_file == "[instant-legacy] legacy/legacy.vmx"
    assert sorted(vm.disk_files) == ["[instant-legacy] legacy/a.vmdk", "[instant-legacy] legacy/b.vmdk"]
    props = read_one(
        conn,
        conn.ref(vim.VirtualMachine, vm.moref),
        ["config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device", "config.guestId"],
    )
    assert (props["config.hardware.numCPU"], props["config.hardware.memoryMB"]) == (4, 512)
    assert props["config.guestId"] == "ubuntu64Guest"  # the .vmx's "ubuntu-64"
    devices = props["config.hardware.device"]
    by_key = {d.key: d for d in devices}
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    kinds = sorted(type(by_key[d.controllerKey]).__name__.rsplit(".", 1)[-1] for d in disks)
    assert kinds == ["VirtualAHCIController", "VirtualNVMEController"]
    assert not [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    vcenter.power_off_and_unregister(conn, vm.moref)
    vcenter.unmount_datastore(conn, host, ds.moref)
    assert (vm_dir / "a-flat.vmdk").read_bytes() == image
