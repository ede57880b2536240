"""Changes to the inventory: folders and VMs created, renamed, moved, destroyed; disks added and grown;
power; change tracking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyVmomi import vim

from .connection import Connection, MiB, translated
from .errors import NotFound, VCenterError
from .names import escape_name
from .soap import read_one
from .tasks import TaskFailed, wait_for_task
from .vmomi import build, moref_of


def create_folder(conn: Connection, parent_folder_moref: str, name: str) -> str:
    """A new VM folder (name escaped as vCenter does); returns its moref."""
    parent = conn.ref(vim.Folder, parent_folder_moref)
    with translated(conn.endpoint):
        return moref_of(parent.CreateFolder(escape_name(name)))


def rename_vm(conn: Connection, vm_moref: str, new_name: str) -> None:
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    with translated(conn.endpoint):
        task = vm.Rename_Task(escape_name(new_name))
    wait_for_task(conn, task)


def move_vm(conn: Connection, vm_moref: str, folder_moref: str) -> None:
    folder = conn.ref(vim.Folder, folder_moref)
    with translated(conn.endpoint):
        task = folder.MoveIntoFolder_Task([conn.ref(vim.VirtualMachine, vm_moref)])
    wait_for_task(conn, task)


def destroy_vm(conn: Connection, vm_moref: str) -> None:
    """Delete a VM and its files, powering it off first if it is on."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    if read_one(conn, vm, ["runtime.powerState"]).get("runtime.powerState") == "poweredOn":
        with translated(conn.endpoint):
            task = vm.PowerOffVM_Task()
        wait_for_task(conn, task)
    with translated(conn.endpoint):
        task = vm.Destroy_Task()
    wait_for_task(conn, task)


@dataclass(frozen=True)
class VmSpec:
    """A simple new VM for create_vm: where it goes, and an LSI Logic SAS controller with one thin disk
    per disks_mb entry."""

    name: str  # as shown; stored escaped
    folder_moref: str
    resource_pool_moref: str
    datastore_name: str  # where its files go
    disks_mb: Sequence[int] = ()
    host_moref: str | None = None  # None: vCenter picks a host of the pool's cluster
    guest_id: str = "otherGuest64"
    num_cpu: int = 1
    memory_mb: int = 1024
    instance_uuid: str | None = None  # None: vCenter makes one up


def create_vm(conn: Connection, spec: VmSpec) -> str:
    """A powered-off VM as spec says, its files on spec.datastore_name; returns its moref."""
    if len(spec.disks_mb) > 15:
        raise ValueError("at most 15 disks fit on one SCSI controller")
    config = build(
        vim.vm.ConfigSpec,
        name=escape_name(spec.name),
        guestId=spec.guest_id,
        numCPUs=spec.num_cpu,
        memoryMB=spec.memory_mb,
        files=build(vim.vm.FileInfo, vmPathName=f"[{spec.datastore_name}]"),
        deviceChange=_disk_devices(spec.disks_mb),
    )
    if spec.instance_uuid:
        config.instanceUuid = spec.instance_uuid
    return create_vm_task(conn, config, spec.folder_moref, spec.resource_pool_moref, spec.host_moref)


def create_vm_task(
    conn: Connection, config: vim.vm.ConfigSpec, folder_moref: str, pool_moref: str, host_moref: str | None
) -> str:
    """CreateVM_Task in that folder and pool (and on that host), waited for; returns the new VM's moref.
    TaskFailed when vCenter refuses (a name taken: fault_name DuplicateName or AlreadyExists)."""
    host = conn.ref(vim.HostSystem, host_moref) if host_moref else None
    with translated(conn.endpoint):
        task = conn.ref(vim.Folder, folder_moref).CreateVM_Task(
            config=config, pool=conn.ref(vim.ResourcePool, pool_moref), host=host
        )
    return moref_of(wait_for_task(conn, task))


def _disk_devices(disks_mb: Sequence[int]) -> list[vim.vm.device.VirtualDeviceSpec]:
    if not disks_mb:
        return []
    device = vim.vm.device
    controller = build(device.VirtualLsiLogicSASController, key=1000, busNumber=0, sharedBus="noSharing")
    specs = [build(device.VirtualDeviceSpec, operation="add", device=controller)]
    for i, mb in enumerate(disks_mb):
        disk = build(
            device.VirtualDisk,
            key=2000 + i,
            controllerKey=1000,
            unitNumber=i if i < 7 else i + 1,  # unit 7 is the controller's own
            capacityInKB=mb * 1024,
            capacityInBytes=mb * MiB,
            # No file name: vCenter names the disk after the VM, in the VM's directory.
            backing=build(
                device.VirtualDisk.FlatVer2BackingInfo, diskMode="persistent", thinProvisioned=True, fileName=""
            ),
        )
        specs.append(build(device.VirtualDeviceSpec, operation="add", fileOperation="create", device=disk))
    return specs


def enable_change_tracking(conn: Connection, vm_moref: str, enabled: bool = True) -> None:
    """Turn Changed Block Tracking on (or off). On vSphere it takes effect at the VM's next stun
    (power on, or a snapshot being taken and removed), which a backup's own snapshot provides."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    with translated(conn.endpoint):
        task = vm.ReconfigVM_Task(spec=build(vim.vm.ConfigSpec, changeTrackingEnabled=enabled))
    wait_for_task(conn, task)


def add_disk(
    conn: Connection,
    vm_moref: str,
    capacity_bytes: int,
    *,
    controller_key: int | None = None,
    unit_number: int | None = None,
) -> int:
    """Add a thin disk in the VM's directory; returns its device key. Without controller_key, on the
    VM's first SCSI controller; without unit_number, at its first free unit (7 is the controller's).
    NotFound when the VM does not exist, VCenterError when there is no such controller or no free unit."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    devices = _devices(conn, vm)
    scsi = sorted(d.key for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController))
    if controller_key is None:
        if not scsi:
            raise VCenterError(f"{conn.endpoint.where}: VM {vm_moref} has no SCSI controller for a new disk")
        controller_key = scsi[0]
    elif not any(d.key == controller_key and isinstance(d, vim.vm.device.VirtualController) for d in devices):
        raise VCenterError(f"{conn.endpoint.where}: VM {vm_moref} has no controller with key {controller_key}")
    taken = {d.unitNumber for d in devices if d.controllerKey == controller_key}
    if unit_number is None:
        free = [u for u in range(16 if controller_key in scsi else 30) if u not in taken and u != 7]
        if not free:
            raise VCenterError(f"{conn.endpoint.where}: controller {controller_key} of {vm_moref} has no free unit")
        unit_number = free[0]
    disk = build(
        vim.vm.device.VirtualDisk,
        key=-1,
        controllerKey=controller_key,
        unitNumber=unit_number,
        capacityInKB=-(-capacity_bytes // 1024),
        capacityInBytes=capacity_bytes,
        backing=build(
            vim.vm.device.VirtualDisk.FlatVer2BackingInfo, diskMode="persistent", thinProvisioned=True, fileName=""
        ),
    )
    change = build(vim.vm.device.VirtualDeviceSpec, operation="add", fileOperation="create", device=disk)
    _reconfigure(conn, vm, build(vim.vm.ConfigSpec, deviceChange=[change]))
    for device in _devices(conn, vm):
        if (
            isinstance(device, vim.vm.device.VirtualDisk)
            and device.controllerKey == controller_key
            and device.unitNumber == unit_number
        ):
            return int(device.key)
    raise VCenterError(f"{conn.endpoint.where}: the disk added to {vm_moref} is not among its devices")


def resize_disk(conn: Connection, vm_moref: str, disk_key: int, capacity_bytes: int) -> None:
    """Grow a disk to capacity_bytes (vCenter cannot shrink one: ValueError). NotFound when the VM or
    the disk does not exist."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    disks = [d for d in _devices(conn, vm) if isinstance(d, vim.vm.device.VirtualDisk) and d.key == disk_key]
    if not disks:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} has no disk with key {disk_key}")
    disk = disks[0]
    current = disk.capacityInBytes or disk.capacityInKB * 1024
    if capacity_bytes < current:
        raise ValueError(f"a disk cannot shrink ({current} bytes now, {capacity_bytes} asked)")
    # pyVmomi's long is made by type() at run time: mypy cannot see that it is an int.
    disk.capacityInBytes, disk.capacityInKB = capacity_bytes, -(-capacity_bytes // 1024)  # type: ignore[assignment]
    _reconfigure(
        conn,
        vm,
        build(vim.vm.ConfigSpec, deviceChange=[build(vim.vm.device.VirtualDeviceSpec, operation="edit", device=disk)]),
    )


def _devices(conn: Connection, vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualDevice]:
    props = read_one(conn, vm, ["config.hardware.device"])
    if "config.hardware.device" not in props:
        raise NotFound(f"{conn.endpoint.where}: VM {moref_of(vm)} does not exist (any more)")
    return list(props["config.hardware.device"])


def _reconfigure(conn: Connection, vm: vim.VirtualMachine, spec: vim.vm.ConfigSpec) -> None:
    with translated(conn.endpoint):
        task = vm.ReconfigVM_Task(spec=spec)
    wait_for_task(conn, task)


def power_state(conn: Connection, vm_moref: str) -> str:
    """ "poweredOn", "poweredOff" or "suspended"; NotFound when the VM does not exist."""
    props = read_one(conn, conn.ref(vim.VirtualMachine, vm_moref), ["runtime.powerState"])
    if "runtime.powerState" not in props:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} does not exist (any more)")
    return str(props["runtime.powerState"])


def power_off(conn: Connection, vm_moref: str) -> None:
    """Power a VM off (a hard power-off, as the vSphere Client's "Power Off", not a guest shutdown).
    Nothing to do when it is off already, including when it was switched off meanwhile; a suspended
    VM is powered off too (its suspended state is discarded). NotFound when the VM does not exist."""
    if power_state(conn, vm_moref) == "poweredOff":
        return
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    with translated(conn.endpoint):
        task = vm.PowerOffVM_Task()
    try:
        wait_for_task(conn, task)
    except TaskFailed as failure:
        if failure.fault_name != "InvalidPowerState" or power_state(conn, vm_moref) != "poweredOff":
            raise
