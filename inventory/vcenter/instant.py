"""The vCenter side of instant VM recovery: an NFS export mounted as a datastore on a host, a VM
registered from the .vmx on it and powered on, its disks moved to a production datastore (storage
vMotion), and the cleanup (power off, unregister, unmount). missing_privileges says up front which of
the rights this needs the signed-in user lacks (the CloudAdmin role of Azure VMware Solution may lack
host storage configuration, for one)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from .connection import Connection, fault_message, translated
from .errors import AlreadyExists, DatastoreUnreachable, InUse, NotFound, VCenterError
from .names import unescape_name
from .soap import _props, _retrieve, read_one
from .tasks import TaskFailed, wait_for_task
from .vmomi import build, moref_of
from .vms import power_off, power_state

# Where each privilege is needed: mounting and unmounting on the host, registering in the folder and
# pool, the rest on the VM (checked on the host, which inherits them where the role is granted).
HOST_PRIVILEGES = ("Host.Config.Storage",)
FOLDER_PRIVILEGES = ("VirtualMachine.Inventory.Register", "VirtualMachine.Inventory.Unregister")
POOL_PRIVILEGES = ("Resource.AssignVMToPool",)
VM_PRIVILEGES = (
    "VirtualMachine.Interact.PowerOn",
    "VirtualMachine.Interact.PowerOff",
    "Resource.ColdMigrate",
    "Resource.HotMigrate",
    "Datastore.AllocateSpace",
    "Datastore.Browse",
    "Datastore.FileManagement",
)

_UNREACHABLE_FAULTS = ("PlatformConfigFault", "HostConfigFault", "NasConfigFault", "NoGateway", "InvalidHostName")


@dataclass(frozen=True)
class NasDatastore:
    moref: str
    name: str  # as vCenter stores it (the spec's localPath)
    url: str  # summary.url ("ds:///vmfs/volumes/..." on ESXi; the directory on the simulator)
    remote_host: str
    remote_path: str
    read_only: bool


@dataclass(frozen=True)
class RegisteredVm:
    moref: str
    name: str  # as shown (unescaped)
    instance_uuid: str
    vmx_file: str  # "[instant-1] web-01.vmx"
    disk_files: tuple[str, ...]  # the disks' descriptors, "[instant-1] web-01.vmdk", by device key


@dataclass(frozen=True)
class PoweredOn:
    moref: str
    host_moref: str  # where it runs


@dataclass(frozen=True)
class Relocated:
    moref: str
    datastore_moref: str
    vmx_file: str
    disk_files: tuple[str, ...]  # the disks' descriptors on the target datastore, by device key


@dataclass(frozen=True)
class MissingPrivileges:
    user: str
    privileges: tuple[str, ...]  # those not granted, "Host.Config.Storage", ...; empty: all granted

    @property
    def sentence(self) -> str:
        """One line for an administrator ("" when nothing is missing)."""
        if not self.privileges:
            return ""
        return (
            f"the vCenter user {self.user} lacks {', '.join(self.privileges)}, which instant recovery needs "
            "(on Azure VMware Solution, CloudAdmin may lack host storage configuration)"
        )


@contextmanager
def _faults(conn: Connection, doing: str, name: str = "", export: str = "") -> Iterator[None]:
    """Faults of these calls and their tasks as one sentence each; others as translated() words them."""
    where = conn.endpoint.where
    try:
        with translated(conn.endpoint):
            yield
    except TaskFailed as failure:
        raise _sentence(where, doing, name, export, failure.fault_name, failure.message) from failure
    except VCenterError as exc:
        cause = exc.__cause__
        if isinstance(cause, vmodl.MethodFault):
            kind = type(cause).__name__.rsplit(".", 1)[-1]
            raise _sentence(where, doing, name, export, kind, fault_message(cause), exc) from cause
        raise


def _sentence(
    where: str, doing: str, name: str, export: str, kind: str, message: str, default: VCenterError | None = None
) -> VCenterError:
    detail = f" ({message})" if message and not message.startswith("*types.") else ""
    if kind in _UNREACHABLE_FAULTS:
        return DatastoreUnreachable(f"{where}: the host could not mount the NFS export {export or name}{detail}")
    if kind in ("DuplicateName", "AlreadyExists", "FileAlreadyExists"):
        return AlreadyExists(f"{where}: cannot {doing}: {name} exists already{detail}")
    if kind == "ResourceInUse":
        return InUse(f"{where}: cannot {doing}: it is in use by a registered VM{detail}")
    if kind in ("NotFound", "FileNotFound", "ManagedObjectNotFound"):
        return NotFound(f"{where}: cannot {doing}: {name or 'it'} does not exist{detail}")
    return default or VCenterError(f"{where}: cannot {doing}: {kind}{detail}")


def _datastore_system(conn: Connection, host_moref: str) -> Any:
    props = read_one(conn, conn.ref(vim.HostSystem, host_moref), ["configManager.datastoreSystem"])
    system = props.get("configManager.datastoreSystem")
    if system is None:
        raise NotFound(f"{conn.endpoint.where}: host {host_moref} does not exist (any more)")
    return system


def mount_nas_datastore(
    conn: Connection, host_moref: str, name: str, remote_host: str, remote_path: str, read_only: bool = False
) -> NasDatastore:
    """Mount remote_host:remote_path (NFS 4.1) as the datastore name on the host. AlreadyExists when the
    name is taken, DatastoreUnreachable when the host cannot mount the export."""
    system = _datastore_system(conn, host_moref)
    spec = build(
        vim.host.NasVolume.Specification,
        remoteHost=remote_host,
        remoteHostNames=[remote_host],
        remotePath=remote_path,
        localPath=name,
        accessMode="readOnly" if read_only else "readWrite",
        type="NFS41",
    )
    with _faults(conn, f"mount {remote_host}:{remote_path} as datastore {name}", name, f"{remote_host}:{remote_path}"):
        ds = system.CreateNasDatastore(spec=spec)
    props = read_one(conn, ds, ["summary.name", "summary.url"])
    return NasDatastore(
        moref=moref_of(ds),
        name=str(props.get("summary.name", name)),
        url=str(props.get("summary.url", "")),
        remote_host=remote_host,
        remote_path=remote_path,
        read_only=read_only,
    )


def unmount_datastore(conn: Connection, host_moref: str, datastore_moref: str) -> None:
    """Unmount the datastore from the host (it is gone once no host mounts it). Nothing to do when it is
    gone already; InUse while a registered VM has files on it."""
    system = _datastore_system(conn, host_moref)
    ds = conn.ref(vim.Datastore, datastore_moref)
    try:
        with _faults(conn, f"unmount datastore {datastore_moref}", f"datastore {datastore_moref}"):
            system.RemoveDatastore(datastore=ds)
    except NotFound:
        if datastore_exists(conn, datastore_moref):
            raise  # it exists, but not on this host


def datastore_exists(conn: Connection, datastore_moref: str) -> bool:
    """Whether vCenter still has the datastore (after unmount_datastore from its last host: no)."""
    try:
        with translated(conn.endpoint):
            return bool(read_one(conn, conn.ref(vim.Datastore, datastore_moref), ["name"]))
    except NotFound:
        return False


def _disk_files(devices: Sequence[Any]) -> tuple[str, ...]:
    disks = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), key=lambda d: int(d.key))
    return tuple(str(getattr(d.backing, "fileName", "")) for d in disks)


def register_vm(
    conn: Connection,
    datastore_name: str,
    vmx_path: str,
    name: str,
    folder_moref: str,
    pool_moref: str,
    host_moref: str,
) -> RegisteredVm:
    """Register the VM whose configuration is vmx_path ("web-01.vmx", relative to the datastore) in the
    folder, pool and host; name as vCenter is to store it (names.check_vm_name). AlreadyExists when
    that .vmx is registered already; NotFound when it is not there."""
    folder = conn.ref(vim.Folder, folder_moref)
    vmx_file = f"[{datastore_name}] {vmx_path}"
    with _faults(conn, f"register {vmx_file}", vmx_file):
        task = folder.RegisterVM_Task(
            path=vmx_file,
            name=name,
            asTemplate=False,
            pool=conn.ref(vim.ResourcePool, pool_moref),
            host=conn.ref(vim.HostSystem, host_moref),
        )
        vm = wait_for_task(conn, task)
    props = read_one(conn, vm, ["name", "config.instanceUuid", "config.files.vmPathName", "config.hardware.device"])
    return RegisteredVm(
        moref=moref_of(vm),
        name=unescape_name(str(props.get("name", name))),
        instance_uuid=str(props.get("config.instanceUuid", "")),
        vmx_file=str(props.get("config.files.vmPathName", vmx_file)),
        disk_files=_disk_files(props.get("config.hardware.device", [])),
    )


def power_on(conn: Connection, vm_moref: str) -> PoweredOn:
    """Power the VM on (nothing to do when it is on)."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    if power_state(conn, vm_moref) != "poweredOn":
        with _faults(conn, f"power on VM {vm_moref}", f"VM {vm_moref}"):
            wait_for_task(conn, vm.PowerOnVM_Task())
    host = read_one(conn, vm, ["runtime.host"]).get("runtime.host")
    return PoweredOn(moref=vm_moref, host_moref=moref_of(host) if host is not None else "")


def relocate_disks(conn: Connection, vm_moref: str, datastore_moref: str) -> Relocated:
    """Move the VM's disks and files to the datastore (storage vMotion; the VM may be running)."""
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    ds = conn.ref(vim.Datastore, datastore_moref)
    spec = build(vim.vm.RelocateSpec, datastore=ds)
    with _faults(conn, f"move VM {vm_moref} to datastore {datastore_moref}", f"datastore {datastore_moref}"):
        wait_for_task(conn, vm.RelocateVM_Task(spec=spec, priority="defaultPriority"))
    props = read_one(conn, vm, ["config.files.vmPathName", "config.hardware.device"])
    return Relocated(
        moref=vm_moref,
        datastore_moref=datastore_moref,
        vmx_file=str(props.get("config.files.vmPathName", "")),
        disk_files=_disk_files(props.get("config.hardware.device", [])),
    )


def power_off_and_unregister(conn: Connection, vm_moref: str) -> None:
    """Power the VM off and remove it from the inventory, leaving its files; nothing to do when it is
    gone already."""
    try:
        power_off(conn, vm_moref)
    except NotFound:
        return
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    try:
        with _faults(conn, f"unregister VM {vm_moref}", f"VM {vm_moref}"):
            vm.UnregisterVM()
    except NotFound:
        return


def missing_privileges(
    conn: Connection, host_moref: str, folder_moref: str | None = None, pool_moref: str | None = None
) -> MissingPrivileges:
    """The privileges instant recovery needs that the signed-in user lacks: host storage configuration
    on the host, registration in the folder (the host when not given), assigning to the pool, power and
    migration of VMs."""
    content = conn.content
    if content.sessionManager is None or content.authorizationManager is None:
        raise VCenterError(f"{conn.endpoint.where}: no session or authorization manager to ask about privileges")
    session = read_one(conn, content.sessionManager, ["currentSession"]).get("currentSession")
    user = str(getattr(session, "userName", "") or "")
    key = str(getattr(session, "key", "") or "")
    wanted: dict[str, tuple[str, ...]] = {}
    host = conn.ref(vim.HostSystem, host_moref)
    wanted[host_moref] = HOST_PRIVILEGES + VM_PRIVILEGES
    entities: dict[str, vim.ManagedEntity] = {host_moref: host}
    folder_id, pool_id = folder_moref or host_moref, pool_moref or host_moref
    if folder_moref:
        entities[folder_moref] = conn.ref(vim.Folder, folder_moref)
    if pool_moref:
        entities[pool_moref] = conn.ref(vim.ResourcePool, pool_moref)
    wanted[folder_id] = wanted.get(folder_id, ()) + FOLDER_PRIVILEGES
    wanted[pool_id] = wanted.get(pool_id, ()) + POOL_PRIVILEGES
    every = sorted({p for privs in wanted.values() for p in privs})
    with translated(conn.endpoint):
        answers = content.authorizationManager.HasPrivilegeOnEntities(
            entity=list(entities.values()), sessionId=key, privId=every
        )
    granted: dict[str, set[str]] = {}
    for answer in answers or []:
        granted[moref_of(answer.entity)] = {a.privId for a in answer.privAvailability if a.isGranted}
    missing = sorted({p for moref, privs in wanted.items() for p in privs if p not in granted.get(moref, set())})
    return MissingPrivileges(user=user, privileges=tuple(missing))


@dataclass(frozen=True)
class LeftoverVm:
    moref: str
    name: str
    vmx_file: str  # "[vmb-instant-7] web-01.vmx": on the datastore, or elsewhere once migrated


@dataclass(frozen=True)
class InstantDatastore:
    """An NFS datastore instant recovery mounted (found by its name), with where it is mounted and the
    VMs that use it: what the reaper removes once its recovery is over."""

    moref: str
    name: str
    remote_host: str  # the NFS server and path it mounts ("" when it is no NFS datastore)
    remote_path: str
    host_morefs: tuple[str, ...]
    vms: tuple[LeftoverVm, ...]


def instant_datastores(conn: Connection, prefix: str) -> list[InstantDatastore]:
    """Every datastore whose name starts with `prefix`, with its NFS server and path, hosts and VMs."""
    query = vmodl.query.PropertyCollector
    with translated(conn.endpoint):
        view = conn.view_manager.CreateContainerView(conn.content.rootFolder, [vim.Datastore], True)
    try:
        through_view = build(query.TraversalSpec, name="view", type=vim.view.ContainerView, path="view", skip=False)
        spec = build(
            query.FilterSpec,
            objectSet=[build(query.ObjectSpec, obj=view, skip=True, selectSet=[through_view])],
            propSet=[build(query.PropertySpec, type=vim.Datastore, pathSet=["name", "info", "host", "vm"])],
        )
        found = []
        for content in _retrieve(conn, spec, page_size=1000):
            props = _props(content)
            name = unescape_name(str(props.get("name", "")))
            if not name.startswith(prefix):
                continue
            hosts = tuple(sorted(moref_of(mount.key) for mount in props.get("host") or []))
            vms = tuple(_leftover_vm(conn, vm) for vm in props.get("vm") or [])
            nas = getattr(props.get("info"), "nas", None)
            remote = (str(getattr(nas, "remoteHost", "") or ""), str(getattr(nas, "remotePath", "") or ""))
            left = tuple(vm for vm in vms if vm)
            found.append(InstantDatastore(moref_of(content.obj), name, *remote, hosts, left))
        return found
    finally:
        with suppress(VCenterError), translated(conn.endpoint):
            view.DestroyView()


def _leftover_vm(conn: Connection, vm: vim.VirtualMachine) -> LeftoverVm | None:
    try:
        with translated(conn.endpoint):
            props = read_one(conn, vm, ["name", "config.files.vmPathName"])
    except NotFound:  # unregistered meanwhile
        return None
    if not props:
        return None
    return LeftoverVm(
        moref_of(vm), unescape_name(str(props.get("name", ""))), str(props.get("config.files.vmPathName", ""))
    )


def vm_with_instance_uuid(conn: Connection, instance_uuid: str) -> str | None:
    """The moref of the VM with this instance UUID, None when vCenter has none (the original is gone)."""
    index = conn.content.searchIndex
    if index is None:
        raise VCenterError(f"{conn.endpoint.where}: no search index to look the VM up in")
    with translated(conn.endpoint):
        found = index.FindByUuid(datacenter=None, uuid=instance_uuid, vmSearch=True, instanceUuid=True)
    return moref_of(found) if found is not None else None
