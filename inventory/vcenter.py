"""The product's only gateway to vCenter: everything that imports pyVmomi lives here.

Callers get plain dataclasses and the exceptions below, never pyVmomi objects or faults, so the
rest of the code base (and its tests) does not depend on pyVmomi's types.

Habits that matter against vCenter (and its simulator, see tools/simulator.py):
- read properties in bulk through the PropertyCollector (RetrievePropertiesEx, paged with
  ContinueRetrievePropertiesEx), never attribute by attribute on managed objects: one round trip
  per page instead of several per VM, and unset properties are simply omitted;
- wait for tasks by reading only info.state/info.error/info.result: reading the whole task.info
  of RemoveSnapshot_Task fails in pyVmomi 9 against vcsim 0.24.2 (info.entity is a snapshot).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

CONNECT_TIMEOUT = 10.0  # seconds, for the TCP probe and HTTP connects
READ_TIMEOUT = 120.0  # seconds, for SOAP calls and datastore reads
PAGE_SIZE = 500  # objects per RetrievePropertiesEx page


class VCenterError(Exception):
    """Any failure talking to vCenter; the subclasses name the ones a user can act on."""


class Unreachable(VCenterError):
    """Nothing answers at host:port (refused, timed out, name not resolved, connection dropped)."""


class BadCredentials(VCenterError):
    """vCenter refused the user name or password."""


class NotAVCenter(VCenterError):
    """Something answers, but it is not a vCenter Server (a web server, or a standalone ESXi host)."""


@dataclass(frozen=True)
class DiskInfo:
    key: int
    label: str
    capacity_bytes: int
    file_name: str  # "[datastore1] web-01/web-01.vmdk"
    datastore: str  # "datastore1", from file_name
    path: str  # "web-01/web-01.vmdk", relative to the datastore


@dataclass(frozen=True)
class VmInfo:
    moref: str
    name: str  # as shown to people: vCenter's %2f, %5c and %25 escapes decoded
    instance_uuid: str | None
    power_state: str  # "poweredOn", "poweredOff", "suspended"
    guest_id: str | None
    is_template: bool
    # Inventory names below are kept as vCenter stores them (escaped), as dcPath and paths need them.
    datacenter: str | None
    folder_moref: str | None  # None for VMs inside a vApp
    folder_path: str  # "Production/Web" below the datacenter's VM folder, "" at its root
    disks: tuple[DiskInfo, ...]


class Connection:
    """A logged-in vCenter session; close() logs out. Use as a context manager."""

    def __init__(self, si: vim.ServiceInstance, *, base_url: str, verify_tls: bool) -> None:
        self.si = si
        self.content = si.RetrieveContent()
        self.base_url = base_url  # "https://vc.example:443", for the /folder datastore API
        self._http = requests.Session()
        self._http.verify = verify_tls
        # /folder accepts the SOAP session's cookie, so file access needs no second login.
        # pyVmomi keeps the raw Set-Cookie value; its first "name=value" pair is the cookie.
        self._http.headers["Cookie"] = si._stub.cookie.split(";", 1)[0].strip()

    def close(self) -> None:
        self._http.close()
        with suppress(Exception):  # logging out of a dead session is not worth an error
            Disconnect(self.si)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def _translated() -> Iterator[None]:
    """Turn pyVmomi faults and socket errors into this module's exceptions."""
    try:
        yield
    except VCenterError:
        raise
    except vim.fault.InvalidLogin as exc:
        raise BadCredentials(exc.msg or "invalid user name or password") from None
    except vim.fault.HostConnectFault as exc:  # pyVmomi wraps transport errors of the first call
        raise Unreachable(exc.msg or "connection failed") from exc
    except vmodl.MethodFault as exc:
        raise VCenterError(f"{type(exc).__name__.rsplit('.', 1)[-1]}: {exc.msg}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise VCenterError(f"TLS certificate not trusted: {exc.verify_message}") from exc
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from exc


def connect(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    protocol: str = "https",
    verify_tls: bool = True,
    thumbprint: str | None = None,
) -> Connection:
    """Log in to vCenter. protocol="http" is for the simulator only.

    thumbprint is accepted for the coming certificate pinning but NOT checked yet: with
    verify_tls=False any certificate is accepted.
    """
    if protocol not in ("https", "http"):
        raise ValueError(f"protocol must be https or http, not {protocol!r}")
    _probe(host, port)  # pyVmomi's version probe has no timeout: fail fast on a silent host
    with _translated():
        try:
            si = SmartConnect(
                protocol=protocol,
                host=host,
                port=port,
                user=username,
                pwd=password,
                disableSslCertValidation=not verify_tls,
                httpConnectionTimeout=READ_TIMEOUT,
            )
        except vmodl.MethodFault:
            raise
        except Exception as exc:
            # SmartConnect raises a bare Exception when /sdk/vimServiceVersions.xml is missing.
            if "not a VIM server" in str(exc):
                raise NotAVCenter(f"{host}:{port} does not serve the vSphere API") from None
            raise
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        conn = Connection(si, base_url=f"{protocol}://{netloc}", verify_tls=verify_tls)
    if conn.content.about.apiType != "VirtualCenter":
        conn.close()
        raise NotAVCenter(f"{host}:{port} is {conn.content.about.fullName}, not a vCenter Server")
    return conn


def _probe(host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise Unreachable(f"{host}:{port}: {exc.strerror or exc}") from None


# ---- property collector ----


def _retrieve(
    conn: Connection, spec: vmodl.query.PropertyCollector.FilterSpec, page_size: int
) -> Iterator[vmodl.query.PropertyCollector.ObjectContent]:
    """All objects matched by spec, one RetrievePropertiesEx page at a time."""
    pc = conn.content.propertyCollector
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size)
    with _translated():
        result = pc.RetrievePropertiesEx(specSet=[spec], options=options)
        while result is not None:
            yield from result.objects
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(token=result.token)


def _props(obj: vmodl.query.PropertyCollector.ObjectContent) -> dict[str, Any]:
    return {prop.name: prop.val for prop in obj.propSet}


def _read_one(conn: Connection, obj: vmodl.ManagedObject, paths: list[str]) -> dict[str, Any]:
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=paths)],
    )
    for content in _retrieve(conn, spec, page_size=1):
        return _props(content)
    return {}


# ---- inventory ----

_DEVICES = "config.hardware.device"
_VM_PROPERTIES = [
    "name",
    "config.instanceUuid",
    "config.guestId",
    "config.template",
    _DEVICES,
    "runtime.powerState",
    "parent",
]
_ESCAPE = re.compile(r"%(2[fF]|5[cC]|25)")


def unescape_name(name: str) -> str:
    """Decode the escapes vCenter applies to ManagedEntity.name ("a%2fb" -> "a/b")."""
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group(1)).decode(), name)


def list_vms(conn: Connection, *, with_disks: bool = True, page_size: int = PAGE_SIZE) -> list[VmInfo]:
    """Every VM (and template) with its folder and disks, in one paged PropertyCollector read.

    Disks come from config.hardware.device, which pyVmomi decodes at ~2.5 ms per VM (every device,
    not only disks): with_disks=False lists 10,000 VMs in seconds, with empty disks tuples.
    """
    vm_properties = _VM_PROPERTIES if with_disks else [p for p in _VM_PROPERTIES if p != _DEVICES]
    content = conn.content
    with _translated():
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine, vim.Folder, vim.Datacenter], True
        )
    try:
        pcq = vmodl.query.PropertyCollector
        spec = pcq.FilterSpec(
            objectSet=[
                pcq.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[pcq.TraversalSpec(name="view", type=vim.view.ContainerView, path="view")],
                )
            ],
            propSet=[
                pcq.PropertySpec(type=vim.VirtualMachine, pathSet=vm_properties),
                pcq.PropertySpec(type=vim.Folder, pathSet=["name", "parent"]),
                pcq.PropertySpec(type=vim.Datacenter, pathSet=["name"]),
            ],
        )
        vms: list[tuple[str, dict[str, Any]]] = []
        parents: dict[str, str | None] = {}
        names: dict[str, str] = {}
        datacenters: set[str] = set()
        for obj in _retrieve(conn, spec, page_size):
            props, moid = _props(obj), obj.obj._moId
            if isinstance(obj.obj, vim.VirtualMachine):
                vms.append((moid, props))
            else:
                names[moid] = props.get("name", "")
                parents[moid] = props["parent"]._moId if props.get("parent") is not None else None
                if isinstance(obj.obj, vim.Datacenter):
                    datacenters.add(moid)
    finally:
        with _translated():
            view.DestroyView()
    locate = _FolderLocator(parents, names, datacenters)
    return [_vm_info(moid, props, locate) for moid, props in vms]


class _FolderLocator:
    """Maps a folder moref to (datacenter name, path below the datacenter's VM folder)."""

    def __init__(self, parents: dict[str, str | None], names: dict[str, str], datacenters: set[str]) -> None:
        self.parents, self.names, self.datacenters = parents, names, datacenters
        self.cache: dict[str, tuple[str | None, str]] = {}

    def __call__(self, folder: str) -> tuple[str | None, str]:
        if folder not in self.cache:
            parent = self.parents.get(folder)
            if parent is None:  # above any datacenter
                self.cache[folder] = (None, "")
            elif parent in self.datacenters:  # the datacenter's "vm" folder: the path's root
                self.cache[folder] = (self.names[parent], "")
            else:
                dc, path = self(parent)
                self.cache[folder] = (dc, f"{path}/{self.names[folder]}" if path else self.names[folder])
        return self.cache[folder]


def _vm_info(moid: str, props: dict[str, Any], locate: _FolderLocator) -> VmInfo:
    parent = props.get("parent")
    folder = parent._moId if isinstance(parent, vim.Folder) else None
    datacenter, folder_path = locate(folder) if folder else (None, "")
    disks = tuple(
        _disk_info(device) for device in props.get(_DEVICES) or [] if isinstance(device, vim.vm.device.VirtualDisk)
    )
    return VmInfo(
        moref=moid,
        name=unescape_name(props.get("name", "")),
        instance_uuid=props.get("config.instanceUuid"),
        power_state=str(props.get("runtime.powerState", "")),
        guest_id=props.get("config.guestId"),
        is_template=bool(props.get("config.template")),
        datacenter=datacenter,
        folder_moref=folder,
        folder_path=folder_path,
        disks=disks,
    )


def _disk_info(disk: vim.vm.device.VirtualDisk) -> DiskInfo:
    file_name = getattr(disk.backing, "fileName", "") or ""
    match = re.match(r"\[([^\]]*)\] ?(.*)", file_name)
    capacity = disk.capacityInBytes or (disk.capacityInKB or 0) * 1024
    return DiskInfo(
        key=disk.key,
        label=disk.deviceInfo.label if disk.deviceInfo else "",
        capacity_bytes=capacity,
        file_name=file_name,
        datastore=match.group(1) if match else "",
        path=match.group(2) if match else file_name,
    )


# ---- snapshots and tasks ----


def create_snapshot(conn: Connection, vm_moref: str, name: str, description: str, quiesce: bool) -> str:
    """Snapshot a VM without its memory; returns the snapshot's moref."""
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    with _translated():
        task = vm.CreateSnapshot_Task(name=name, description=description, memory=False, quiesce=quiesce)
    return _wait(conn, task)._moId


def remove_snapshot(conn: Connection, snapshot_moref: str) -> None:
    """Delete one snapshot (not its children), merging its changes into the parent disk."""
    snapshot = vim.vm.Snapshot(snapshot_moref, conn.si._stub)
    with _translated():
        task = snapshot.RemoveSnapshot_Task(removeChildren=False, consolidate=True)
    _wait(conn, task)


def _wait(conn: Connection, task: vim.Task, timeout: float = 3600.0) -> Any:
    """Poll a task's state, error and result only (never the whole task.info, see module doc)."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        props = _read_one(conn, task, ["info.state", "info.error", "info.result"])
        state = props.get("info.state")
        if state == vim.TaskInfo.State.success:
            return props.get("info.result")
        if state == vim.TaskInfo.State.error:
            error = props.get("info.error")
            fault = error.fault if error is not None else None
            kind = type(fault).__name__.rsplit(".", 1)[-1] if fault is not None else "error"
            message = (error.localizedMessage if error is not None else "") or getattr(fault, "msg", "")
            raise VCenterError(f"task {task._moId} failed: {kind}" + (f": {message}" if message else ""))
        if time.monotonic() > deadline:
            raise VCenterError(f"task {task._moId} still {state} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


# ---- datastore files ----


def read_datastore_file(
    conn: Connection, datacenter: str, datastore: str, path: str, offset: int, length: int
) -> bytes:
    """Read length bytes at offset of a datastore file through vCenter's /folder API.

    datacenter and datastore are inventory names as vCenter has them; path is relative to the
    datastore ("web-01/web-01-flat.vmdk"). Returns fewer bytes at the end of the file.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must not be negative")
    if length == 0:
        return b""
    url = f"{conn.base_url}/folder/{quote(path, safe='/')}"
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    params = {"dcPath": datacenter, "dsName": datastore}
    with _translated():
        try:
            resp = conn._http.get(
                url, params=params, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            )
        except requests.ConnectionError as exc:
            raise Unreachable(str(exc)) from exc
        except requests.RequestException as exc:
            raise VCenterError(str(exc)) from exc
    with resp:
        if resp.status_code == 206:
            return _read_exactly(resp, length)
        if resp.status_code == 416:  # offset at or past the end
            return b""
        if resp.status_code == 200:  # Range ignored: skip to offset in the stream
            while offset > 0:
                skipped = _read_exactly(resp, min(offset, 1 << 20))
                if not skipped:
                    return b""
                offset -= len(skipped)
            return _read_exactly(resp, length)
        if resp.status_code in (401, 403):
            raise BadCredentials(f"datastore access refused ({resp.status_code})")
        raise VCenterError(f"[{datastore}] {path}: HTTP {resp.status_code}")


def _read_exactly(resp: requests.Response, length: int) -> bytes:
    """Up to length bytes of the body: fewer only at its end."""
    chunks, remaining = [], length
    with _translated():
        while remaining and (chunk := resp.raw.read(remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)
