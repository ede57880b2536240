"""Changes to the inventory: folders and VMs created, renamed, moved, destroyed; disks added and grown;
power; change tracking."""

from __future__ import annotations

from collections.abc import Sequence

from pyVmomi import vim

from .connection import Connection, MiB, _translated
from .errors import NotFound, VCenterError
from .names import escape_name
from .soap import _read_one
from .tasks import _TaskFailed, _wait


def create_folder(conn: Connection, parent_folder_moref: str, name: str) -> str:
    """A new VM folder (name escaped as vCenter does); returns its moref."""
    parent = vim.Folder(parent_folder_moref, conn.si._stub)
    with _translated(conn.endpoint):
        return parent.CreateFolder(escape_name(name))._moId


def rename_vm(conn: Connection, vm_moref: str, new_name: str) -> None:
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    with _translated(conn.endpoint):
        task = vm.Rename_Task(escape_name(new_name))
    _wait(conn, task)


def move_vm(conn: Connection, vm_moref: str, folder_moref: str) -> None:
    folder = vim.Folder(folder_moref, conn.si._stub)
    with _translated(conn.endpoint):
        task = folder.MoveIntoFolder_Task([vim.VirtualMachine(vm_moref, conn.si._stub)])
    _wait(conn, task)


def destroy_vm(conn: Connection, vm_moref: str) -> None:
    """Delete a VM and its files, powering it off first if it is on."""
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    if _read_one(conn, vm, ["runtime.powerState"]).get("runtime.powerState") == "poweredOn":
        with _translated(conn.endpoint):
            task = vm.PowerOffVM_Task()
        _wait(conn, task)
    with _translated(conn.endpoint):
        task = vm.Destroy_Task()
    _wait(conn, task)


def create_vm(
    conn: Connection,
    *,
    folder_moref: str,
    name: str,
    resource_pool_moref: str,
    host_moref: str | None,
    datastore_name: str,
    disks_mb: Sequence[int],
    guest_id: str = "otherGuest64",
    num_cpu: int = 1,
    memory_mb: int = 1024,
    instance_uuid: str | None = None,
) -> str:
    """A powered-off VM with an LSI Logic SAS controller and one thin disk per disks_mb entry, its
    files on datastore_name; returns its moref."""
    if len(disks_mb) > 15:
        raise ValueError("at most 15 disks fit on one SCSI controller")
    stub = conn.si._stub
    config = vim.vm.ConfigSpec(
        name=escape_name(name),
        guestId=guest_id,
        numCPUs=num_cpu,
        memoryMB=memory_mb,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore_name}]"),
        deviceChange=_disk_devices(disks_mb),
    )
    if instance_uuid:
        config.instanceUuid = instance_uuid
    folder = vim.Folder(folder_moref, stub)
    host = vim.HostSystem(host_moref, stub) if host_moref else None
    with _translated(conn.endpoint):
        task = folder.CreateVM_Task(config=config, pool=vim.ResourcePool(resource_pool_moref, stub), host=host)
    return _wait(conn, task)._moId


def _disk_devices(disks_mb: Sequence[int]) -> list[vim.vm.device.VirtualDeviceSpec]:
    if not disks_mb:
        return []
    device = vim.vm.device
    controller = device.VirtualLsiLogicSASController(key=1000, busNumber=0, sharedBus="noSharing")
    specs = [device.VirtualDeviceSpec(operation="add", device=controller)]
    for i, mb in enumerate(disks_mb):
        disk = device.VirtualDisk(
            key=2000 + i,
            controllerKey=1000,
            unitNumber=i if i < 7 else i + 1,  # unit 7 is the controller's own
            capacityInKB=mb * 1024,
            capacityInBytes=mb * MiB,
            # No file name: vCenter names the disk after the VM, in the VM's directory.
            backing=device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=True, fileName=""),
        )
        specs.append(device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk))
    return specs


def enable_change_tracking(conn: Connection, vm_moref: str, enabled: bool = True) -> None:
    """Turn Changed Block Tracking on (or off). On vSphere it takes effect at the VM's next stun
    (power on, or a snapshot being taken and removed), which a backup's own snapshot provides."""
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    with _translated(conn.endpoint):
        task = vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=enabled))
    _wait(conn, task)


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
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
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
    disk = vim.vm.device.VirtualDisk(
        key=-1,
        controllerKey=controller_key,
        unitNumber=unit_number,
        capacityInKB=-(-capacity_bytes // 1024),
        capacityInBytes=capacity_bytes,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", thinProvisioned=True, fileName=""),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
    _reconfigure(conn, vm, vim.vm.ConfigSpec(deviceChange=[change]))
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
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    disks = [d for d in _devices(conn, vm) if isinstance(d, vim.vm.device.VirtualDisk) and d.key == disk_key]
    if not disks:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} has no disk with key {disk_key}")
    disk = disks[0]
    current = disk.capacityInBytes or disk.capacityInKB * 1024
    if capacity_bytes < current:
        raise ValueError(f"a disk cannot shrink ({current} bytes now, {capacity_bytes} asked)")
    disk.capacityInBytes, disk.capacityInKB = capacity_bytes, -(-capacity_bytes // 1024)
    _reconfigure(
        conn, vm, vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)])
    )


def _devices(conn: Connection, vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualDevice]:
    props = _read_one(conn, vm, ["config.hardware.device"])
    if "config.hardware.device" not in props:
        raise NotFound(f"{conn.endpoint.where}: VM {vm._moId} does not exist (any more)")
    return list(props["config.hardware.device"])


def _reconfigure(conn: Connection, vm: vim.VirtualMachine, spec: vim.vm.ConfigSpec) -> None:
    with _translated(conn.endpoint):
        task = vm.ReconfigVM_Task(spec=spec)
    _wait(conn, task)


def power_state(conn: Connection, vm_moref: str) -> str:
    """ "poweredOn", "poweredOff" or "suspended"; NotFound when the VM does not exist."""
    props = _read_one(conn, vim.VirtualMachine(vm_moref, conn.si._stub), ["runtime.powerState"])
    if "runtime.powerState" not in props:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} does not exist (any more)")
    return str(props["runtime.powerState"])


def power_off(conn: Connection, vm_moref: str) -> None:
    """Power a VM off (a hard power-off, as the vSphere Client's "Power Off", not a guest shutdown).
    Nothing to do when it is off already, including when it was switched off meanwhile; a suspended
    VM is powered off too (its suspended state is discarded). NotFound when the VM does not exist."""
    if power_state(conn, vm_moref) == "poweredOff":
        return
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    with _translated(conn.endpoint):
        task = vm.PowerOffVM_Task()
    try:
        _wait(conn, task)
    except _TaskFailed as failure:
        if failure.fault_name != "InvalidPowerState" or power_state(conn, vm_moref) != "poweredOff":
            raise
