"""The product's only gateway to vCenter: everything that imports pyVmomi lives here.

Callers get plain frozen dataclasses and the exceptions below, never pyVmomi objects or faults, so
the rest of the code base (and its tests) does not depend on pyVmomi's types.

Habits that matter against vCenter (and its simulator, see tools/simulator.py):
- read properties in bulk through the PropertyCollector (RetrievePropertiesEx, paged with
  ContinueRetrievePropertiesEx), never attribute by attribute on managed objects: one round trip
  per page instead of several per VM, and unset properties are simply omitted (reading an unset
  property through a pyVmomi accessor makes vcsim 0.24.2 drop the connection);
- the bulk inventory reads parse the SOAP response with ElementTree instead of pyVmomi's
  deserializer: pyVmomi builds a Python object per device and field (about 2 ms per VM for
  config.hardware.device), which made 10,000 VMs take 20-25 s; ElementTree takes about a fifth;
- wait for tasks by reading only info.state/info.error/info.result: reading the whole task.info
  of RemoveSnapshot_Task fails in pyVmomi 9 against vcsim 0.24.2 (info.entity is a snapshot);
- TLS is checked by this module, never by pyVmomi's defaults: pyVmomi skips certificate checks for
  127.0.0.1/localhost, and its thumbprint is only a fallback after CA verification fails;
- log in once per connect(): a wrong password is never retried (vCenter locks accounts).
"""

from __future__ import annotations

import hashlib
import http.client
import math
import re
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape as xml_escape

import urllib3
from cryptography import x509
from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap
from urllib3.util.wait import wait_for_read

CONNECT_TIMEOUT = 10.0  # seconds: default for TCP connects, TLS handshakes and the API probe
READ_TIMEOUT = 120.0  # seconds, for SOAP calls and datastore reads
PAGE_SIZE = 1000  # objects per RetrievePropertiesEx page
WAIT_SLICE = 60  # seconds: longest single WaitForUpdatesEx, well below READ_TIMEOUT (the socket timeout)
MiB = 1024 * 1024
SESSION_ENDED = "the vCenter session ended (vCenter restarted or the session expired)"
CREDENTIALS_REJECTED = "vCenter rejected the user name or password"


# ---- errors ----


class VCenterError(Exception):
    """Any failure talking to vCenter; str() is one line for an administrator (never a password).

    retryable says whether trying again later may help (the subclasses that are not retryable need a
    person: a wrong password retried automatically would lock the account).
    """

    retryable = False


class Unreachable(VCenterError):
    """Nothing answers at host:port (refused, timed out, name not resolved), the connection dropped,
    or the session ended (vCenter restarted): reconnect later."""

    retryable = True


class BadCredentials(VCenterError):
    """vCenter refused the user name or password. Never retry automatically (account lockout)."""


class NotAVCenter(VCenterError):
    """Something answers, but it is not a vCenter Server (a web server, a standalone ESXi host, or
    plain HTTP where HTTPS was expected)."""


class ThumbprintMismatch(VCenterError):
    """The server's certificate is not the pinned one: it was replaced, or another server answers."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected  # "AA:BB:..."
        self.actual = actual


class CertificateNotTrusted(VCenterError):
    """The certificate does not verify against the system's CAs for this host name. .thumbprint is its
    SHA-256 ("AA:BB:..."), to show to an administrator who may check and pin it."""

    def __init__(self, message: str, *, thumbprint: str, reason: str) -> None:
        super().__init__(message)
        self.thumbprint = thumbprint
        self.reason = reason  # OpenSSL's words, such as "self-signed certificate"


# ---- results ----


@dataclass(frozen=True)
class ServerIdentity:
    """What a TLS server presents, for an administrator to decide whether to trust it."""

    thumbprint_sha256: str  # "AA:BB:..." (32 bytes)
    subject: str  # RFC 4514, e.g. "CN=vc.example.com,O=VMware"
    issuer: str
    not_after: datetime  # UTC
    trusted: bool  # verifies against the system's CAs, for this host name
    trust_problem: str | None  # why not, in OpenSSL's words ("self-signed certificate", ...)


@dataclass(frozen=True)
class AboutInfo:
    instance_uuid: str  # identifies this vCenter Server (stays the same across restarts and renames)
    name: str  # "VMware vCenter Server"
    version: str  # "8.0.3"
    build: str
    api_type: str  # "VirtualCenter" (or "HostAgent" for ESXi)
    api_version: str
    full_name: str  # "VMware vCenter Server 8.0.3 build-24022515"


# Entity names below are shown to people: vCenter's %2f, %5c and %25 escapes are decoded.


@dataclass(frozen=True)
class DatacenterInfo:
    moref: str
    name: str
    vm_folder_moref: str


@dataclass(frozen=True)
class FolderInfo:
    """A VM folder (one whose childType includes VirtualMachine); each datacenter's root "vm" folder
    is one too, with is_root=True and parent_moref None."""

    moref: str
    name: str
    parent_moref: str | None  # the parent VM folder; None for a datacenter's root VM folder
    datacenter_moref: str
    is_vm_folder: bool
    is_root: bool


@dataclass(frozen=True)
class ClusterInfo:
    moref: str
    name: str
    datacenter_moref: str


@dataclass(frozen=True)
class HostInfo:
    moref: str
    name: str
    cluster_moref: str | None  # None for a standalone host
    datacenter_moref: str
    connection_state: str  # "connected", "disconnected", "notResponding"


@dataclass(frozen=True)
class ResourcePoolInfo:
    moref: str
    name: str
    parent_moref: str | None  # the parent pool; None for a cluster's (or host's) root pool
    owner_moref: str  # the cluster or standalone compute resource
    datacenter_moref: str


@dataclass(frozen=True)
class DatastoreInfo:
    moref: str
    name: str
    datacenter_moref: str
    capacity_bytes: int
    free_bytes: int
    type: str  # "VMFS", "NFS", "vsan", "OTHER" (vcsim's local datastores)
    url: str


@dataclass(frozen=True)
class DiskInfo:
    key: int
    label: str  # "Hard disk 1"
    capacity_bytes: int
    file_name: str  # "[datastore1] web-01/web-01.vmdk"
    datastore_name: str  # "datastore1", from file_name
    datastore_moref: str | None
    path: str  # "web-01/web-01.vmdk", relative to the datastore
    thin: bool | None  # None when the backing has no such notion (RDM, sparse)
    disk_mode: str  # "persistent", "independent_persistent", "independent_nonpersistent", ...
    backing: str  # "flat", "sparse", "rdm_physical", "rdm_virtual" or "other"
    controller_key: int | None
    unit_number: int | None

    @property
    def datastore(self) -> str:
        """The datastore's name (the field's former name)."""
        return self.datastore_name


@dataclass(frozen=True)
class VmInfo:
    moref: str
    name: str  # as shown to people: vCenter's %2f, %5c and %25 escapes decoded
    instance_uuid: str | None
    bios_uuid: str | None
    power_state: str  # "poweredOn", "poweredOff", "suspended"
    guest_id: str | None
    guest_full_name: str | None
    is_template: bool
    datacenter_moref: str | None
    # The two below are kept as vCenter stores names (escaped), as dcPath and inventory paths need them.
    datacenter: str | None
    folder_path: str  # "Production/Web" below the datacenter's VM folder, "" at its root
    folder_moref: str | None  # None for VMs inside a vApp
    host_moref: str | None
    resource_pool_moref: str | None
    num_cpu: int
    memory_mb: int
    snapshot_count: int  # every snapshot in the tree, not only the roots
    cbt_enabled: bool  # config.changeTrackingEnabled
    change_version: str | None  # config.changeVersion: changes with every configuration (disk) change
    disks: tuple[DiskInfo, ...]


@dataclass(frozen=True)
class Inventory:
    about: AboutInfo
    datacenters: tuple[DatacenterInfo, ...]
    folders: tuple[FolderInfo, ...]  # VM folders only
    clusters: tuple[ClusterInfo, ...]
    hosts: tuple[HostInfo, ...]
    resource_pools: tuple[ResourcePoolInfo, ...]
    datastores: tuple[DatastoreInfo, ...]
    vms: tuple[VmInfo, ...]
    round_trips: int  # SOAP requests this read took


@dataclass(frozen=True)
class ChangeSet:
    """What changed since the previous ChangeWatcher.wait().

    A moref in vms_changed may be gone by the time it is read (fetch_vms then leaves it out).
    """

    vms_changed: frozenset[str]  # entered (created, moved in) or modified
    vms_removed: frozenset[str]
    folders_changed: bool
    version: str


# ---- TLS ----


def normalize_thumbprint(value: str) -> str:
    """ "aa:bb:.." or "AABB.." (SHA-256) -> "AA:BB:..."; ValueError for anything else (SHA-1 too)."""
    digits = re.sub(r"[\s:]", "", value).upper()
    if not re.fullmatch(r"[0-9A-F]{64}", digits):
        raise ValueError("a SHA-256 thumbprint is 32 bytes: 64 hex digits, colons optional")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def _thumbprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


class _PinnedContext(ssl.SSLContext):
    """Accepts exactly the certificate whose SHA-256 is pinned, CA-signed or not, for any host name:
    what trusting a self-signed vCenter certificate means. Every new connection is checked, so a
    certificate replaced after connect() is refused too."""

    pin: str
    where: str

    def __new__(cls, pin: str, where: str) -> _PinnedContext:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin below replaces CA and host name checks
        context.pin, context.where = pin, where
        return context

    def __init__(self, pin: str, where: str) -> None:  # __new__ did it all; SSLContext has no __init__
        pass

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        tls = super().wrap_socket(sock, *args, **kwargs)
        der = tls.getpeercert(binary_form=True)
        actual = _thumbprint(der) if der else "(no certificate)"
        if actual != self.pin:
            tls.close()
            raise _mismatch(self.where, self.pin, actual)
        return tls


def _mismatch(where: str, expected: str, actual: str) -> ThumbprintMismatch:
    return ThumbprintMismatch(
        f"{where}: the TLS certificate (SHA-256 {actual}) does not match the pinned thumbprint {expected}; "
        "the certificate was replaced, or another server answers",
        expected=expected,
        actual=actual,
    )


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to look at the certificate, or verify_tls=False
    return context


@dataclass(frozen=True)
class _Endpoint:
    """Where vCenter is and how its TLS is checked: pin (normalised), else CA + host name if verify."""

    host: str
    port: int
    protocol: str
    verify: bool
    pin: str | None
    timeout: float

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.protocol}://{self.where}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """For pyVmomi and http.client: a new context (urllib3 and pyVmomi may change theirs)."""
        if self.protocol == "http":
            return None
        if self.pin:
            return _PinnedContext(self.pin, self.where)
        return ssl.create_default_context() if self.verify else _unverified_context()

    def pool(self) -> urllib3.PoolManager:
        """For the datastore API and the bulk SOAP reads: the same checks through urllib3."""
        if self.protocol == "http":
            return urllib3.PoolManager(maxsize=8)
        if self.pin:  # urllib3 compares SHA-256 fingerprints itself, and then counts them as verified
            return urllib3.PoolManager(maxsize=8, cert_reqs="CERT_NONE", assert_fingerprint=self.pin.replace(":", ""))
        # urllib3's own context loads the system's CAs, as ssl.create_default_context() does.
        return urllib3.PoolManager(maxsize=8, cert_reqs="CERT_REQUIRED" if self.verify else "CERT_NONE")


def fetch_server_identity(host: str, port: int, timeout: float = 5.0) -> ServerIdentity:
    """The certificate a TLS server presents (no login), and whether it is trusted as it is."""
    der = _handshake(host, port, timeout, _unverified_context())
    cert = x509.load_der_x509_certificate(der)
    problem = None
    try:
        _handshake(host, port, timeout, ssl.create_default_context())
    except ssl.SSLCertVerificationError as exc:
        problem = exc.verify_message or str(exc)
    return ServerIdentity(
        thumbprint_sha256=_thumbprint(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        trusted=problem is None,
        trust_problem=problem,
    )


def _handshake(host: str, port: int, timeout: float, context: ssl.SSLContext) -> bytes:
    """The server's certificate (DER) after a TLS handshake with context."""
    host = host.strip("[]")  # an IPv6 address may come as in a URL
    where = _Endpoint(host, port, "https", False, None, timeout).where
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        raise NotAVCenter(f"{where} answers, but not with TLS ({exc.reason or exc}): is it an HTTPS port?") from None
    except OSError as exc:
        raise Unreachable(f"{where} cannot be reached ({_os_message(exc)})") from None
    if not der:
        raise NotAVCenter(f"{where} presents no TLS certificate")
    return der


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused", "timed out", ...)."""
    cause = exc.__cause__ if isinstance(exc, urllib3.exceptions.NewConnectionError) else exc
    if isinstance(cause, OSError):
        return _os_message(cause)
    return str(exc) or type(exc).__name__


def _os_message(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _tls_failure(endpoint: _Endpoint, exc: BaseException) -> VCenterError:
    """Name a failed TLS handshake: pin mismatch, untrusted certificate, or a dropped connection."""
    try:
        identity = fetch_server_identity(endpoint.host, endpoint.port, endpoint.timeout)
    except VCenterError as failure:
        return failure
    actual = identity.thumbprint_sha256
    if endpoint.pin:
        if actual != endpoint.pin:
            return _mismatch(endpoint.where, endpoint.pin, actual)
    elif endpoint.verify and not identity.trusted:
        reason = identity.trust_problem or "not trusted"
        return CertificateNotTrusted(
            f"{endpoint.where}: the TLS certificate is not trusted ({reason}); its SHA-256 thumbprint is "
            f"{actual}: check it with the vCenter administrator, then pin it",
            thumbprint=actual,
            reason=reason,
        )
    return Unreachable(f"{endpoint.where} cannot be reached (TLS failed: {exc})")


# ---- connection ----


class Connection:
    """A logged-in vCenter session; close() logs out. Use as a context manager.

    Thread-safe for calls from several threads (pyVmomi and urllib3 pool their HTTP connections).
    """

    def __init__(self, si: vim.ServiceInstance, content: vim.ServiceInstanceContent, endpoint: _Endpoint) -> None:
        self.si = si
        self.content = content
        self.endpoint = endpoint
        self.about = _about_info(content.about)
        self.base_url = endpoint.base_url  # "https://vc.example:443", for /sdk and /folder
        self._pool = endpoint.pool()
        self._lock = threading.Lock()
        self._round_trips = 0
        stub = si._stub
        invoke, get_connection = stub.InvokeMethod, stub.GetConnection

        def counted(*args: Any, **kwargs: Any) -> Any:  # every pyVmomi SOAP call goes through here
            self._count()
            return invoke(*args, **kwargs)

        def live_connection() -> http.client.HTTPConnection:
            # pyVmomi reuses pooled keep-alive connections blindly: one the server has closed (idle
            # timeout, restart) would fail the next call. An idle connection with something to read
            # has been closed (or is broken): close it, and http.client opens a new one (TLS checked).
            conn = get_connection()
            if conn.sock is not None and wait_for_read(conn.sock, timeout=0.0):
                conn.close()
            return conn

        stub.InvokeMethod, stub.GetConnection = counted, live_connection

    @property
    def round_trips(self) -> int:
        """SOAP requests sent on this connection so far (pyVmomi's and the bulk reads')."""
        return self._round_trips

    def _count(self) -> None:
        with self._lock:
            self._round_trips += 1

    def _cookie(self) -> str:
        # /folder and /sdk accept the SOAP session's cookie, so raw requests need no second login.
        # pyVmomi keeps the raw Set-Cookie value; its first "name=value" pair is the cookie.
        return self.si._stub.cookie.split(";", 1)[0].strip()

    def close(self) -> None:
        with suppress(Exception):  # logging out of a dead session is not worth an error
            self.content.sessionManager.Logout()
        self.si._stub.DropConnections()
        self._pool.clear()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def _translated(endpoint: _Endpoint | None = None) -> Iterator[None]:
    """Turn pyVmomi faults, TLS and socket errors into this module's exceptions."""
    place = endpoint.where if endpoint else "vCenter"
    try:
        yield
    except VCenterError:
        raise
    except vim.fault.InvalidLogin:
        raise BadCredentials(f"{place}: {CREDENTIALS_REJECTED}") from None
    except vim.fault.NotAuthenticated:
        raise Unreachable(f"{place}: {SESSION_ENDED}") from None
    except vim.fault.HostConnectFault as exc:
        raise Unreachable(f"{place} cannot be reached ({exc.msg or 'connection failed'})") from exc
    except vmodl.MethodFault as exc:
        raise VCenterError(f"{place}: {_fault_name(exc)}: {exc.msg}") from exc
    except (ssl.SSLError, urllib3.exceptions.SSLError) as exc:
        if endpoint is None:
            raise Unreachable(f"{place} cannot be reached (TLS failed: {exc})") from exc
        raise _tls_failure(endpoint, exc) from None
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        raise Unreachable(f"{place} cannot be reached ({_reason(exc)})") from exc


def _fault_name(fault: BaseException) -> str:
    return type(fault).__name__.rsplit(".", 1)[-1]


def connect(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    protocol: str = "https",
    verify_tls: bool = True,
    thumbprint: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Connection:
    """Log in to vCenter (one Login: BadCredentials is never retried here, and should not be by callers).

    TLS: with thumbprint, the certificate's SHA-256 must equal it (no CA or host name check, the way to
    trust a self-signed certificate), else ThumbprintMismatch; without, verify_tls checks CA and host
    name against the system's CAs, else CertificateNotTrusted (carrying the thumbprint to show);
    verify_tls=False checks nothing. protocol="http" is for the simulator only. timeout bounds the TCP
    connect, the TLS handshake and the API probe; later SOAP calls may take up to READ_TIMEOUT.
    """
    if protocol not in ("https", "http"):
        raise ValueError(f"protocol must be https or http, not {protocol!r}")
    pin = normalize_thumbprint(thumbprint) if thumbprint and protocol == "https" else None
    endpoint = _Endpoint(host.strip("[]"), port, protocol, verify_tls, pin, timeout)
    version = _api_version(endpoint)
    stub = SoapStubAdapter(
        host=endpoint.host,
        port=port if protocol == "https" else -port,  # pyVmomi's way of saying plain HTTP
        version=version,
        sslContext=endpoint.ssl_context(),
        httpConnectionTimeout=max(READ_TIMEOUT, timeout),
    )
    si = vim.ServiceInstance("ServiceInstance", stub)
    try:
        with _translated(endpoint):
            content = si.RetrieveContent()
            if content.about.apiType != "VirtualCenter":  # checked before the password is sent
                raise NotAVCenter(f"{endpoint.where} is {content.about.fullName}, not a vCenter Server")
            content.sessionManager.Login(username, password, None)
    except BaseException:
        stub.DropConnections()
        raise
    return Connection(si, content, endpoint)


def _api_version(endpoint: _Endpoint) -> str:
    """pyVmomi's newest API version the server offers, from /sdk/vimServiceVersions.xml.

    Also the first contact, with endpoint.timeout (pyVmomi's own probe has none): a closed port, a
    web server, plain HTTP on an HTTPS port and TLS problems are told apart here.
    """
    where, host = endpoint.where, endpoint.host
    if endpoint.protocol == "https":
        http_conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, endpoint.port, timeout=endpoint.timeout, context=endpoint.ssl_context()
        )
    else:
        http_conn = http.client.HTTPConnection(host, endpoint.port, timeout=endpoint.timeout)
    try:
        with _translated(endpoint):
            http_conn.connect()  # TLS problems and closed ports are named by _translated
            try:
                http_conn.request("GET", "/sdk/vimServiceVersions.xml")
                resp = http_conn.getresponse()
                status, body = resp.status, resp.read(1 << 20)
            except (http.client.HTTPException, ConnectionError) as exc:
                raise NotAVCenter(f"{where} answers, but not as an HTTP server ({type(exc).__name__})") from None
    finally:
        http_conn.close()
    if status != 200:
        raise NotAVCenter(f"{where} does not serve the vSphere API (HTTP {status} for /sdk/vimServiceVersions.xml)")
    try:
        root = ET.fromstring(body)  # noqa: S314 - see _soap_objects
    except ET.ParseError:
        raise NotAVCenter(f"{where} does not serve the vSphere API (no version list)") from None
    offered = {
        version.text
        for namespace in root.iter("namespace")
        if namespace.findtext("name") in (None, "urn:vim25")
        for version in [namespace.find("version"), *namespace.findall("priorVersions/version")]
        if version is not None and version.text
    }
    for name in GetServiceVersions("vim25"):
        if versionIdMap[name] in offered:
            return name
    raise VCenterError(f"{where} offers no vSphere API version this program knows ({', '.join(sorted(offered))})")


def _about_info(info: vim.AboutInfo) -> AboutInfo:
    return AboutInfo(
        instance_uuid=info.instanceUuid or "",
        name=info.name or "",
        version=info.version or "",
        build=info.build or "",
        api_type=info.apiType or "",
        api_version=info.apiVersion or "",
        full_name=info.fullName or "",
    )


def about(conn: Connection) -> AboutInfo:
    """Who this vCenter is (read at connect(), no round trip); instance_uuid identifies it."""
    return conn.about


# ---- property collector through pyVmomi (small reads) ----


def _retrieve(
    conn: Connection, spec: vmodl.query.PropertyCollector.FilterSpec, page_size: int
) -> Iterator[vmodl.query.PropertyCollector.ObjectContent]:
    """All objects matched by spec, one RetrievePropertiesEx page at a time."""
    pc = conn.content.propertyCollector
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size)
    with _translated(conn.endpoint):
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


# ---- property collector, raw (bulk reads) ----
#
# The request is written by hand and the response parsed with ElementTree as it arrives: objects are
# handed over one at a time and their elements cleared, so memory stays flat however big a page.

_SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_V = "{urn:vim25}"
_XSI_TYPE = f"{{{_XSI}}}type"


@dataclass(frozen=True)
class _Ref:
    type: str
    value: str


@dataclass
class _Raw:
    """One object of a RetrievePropertiesEx result; props hold <val> elements, valid until the next."""

    type: str
    moref: str
    props: dict[str, ET.Element]

    def text(self, name: str, default: str | None = None) -> str | None:
        val = self.props.get(name)
        return (val.text or "") if val is not None else default

    def ref(self, name: str) -> _Ref | None:
        val = self.props.get(name)
        return _Ref(val.get("type", ""), val.text or "") if val is not None else None

    def flag(self, name: str) -> bool:
        val = self.props.get(name)
        return val is not None and (val.text or "").strip() == "true"

    def number(self, name: str) -> int:
        val = self.props.get(name)
        return int(val.text) if val is not None and val.text else 0

    def strings(self, name: str) -> list[str]:
        val = self.props.get(name)
        return [item.text or "" for item in val] if val is not None else []


def _xsi_type(element: ET.Element | None) -> str:
    return element.get(_XSI_TYPE, "").rpartition(":")[2] if element is not None else ""


def _property_specs(properties: dict[str, Sequence[str]]) -> str:
    return "".join(
        f"<propSet><type>{kind}</type>{''.join(f'<pathSet>{path}</pathSet>' for path in paths)}</propSet>"
        for kind, paths in properties.items()
    )


def _view_objects(view: str) -> str:
    return (
        f'<objectSet><obj type="ContainerView">{xml_escape(view)}</obj><skip>true</skip>'
        '<selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type>'
        "<path>view</path><skip>false</skip></selectSet></objectSet>"
    )


def _objects_with_ancestors(kind: str, morefs: Iterable[str]) -> str:
    """Each object and every entity above it (parent, its parent, ...) up to the root folder."""
    up = (
        '<selectSet xsi:type="TraversalSpec"><name>up</name><type>ManagedEntity</type><path>parent</path>'
        "<skip>false</skip><selectSet><name>up</name></selectSet></selectSet>"
    )
    return "".join(
        f'<objectSet><obj type="{kind}">{xml_escape(moref)}</obj><skip>false</skip>{up}</objectSet>' for moref in morefs
    )


def _envelope(method: str, this: str, body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{_SOAPENV}" xmlns:xsi="{_XSI}">'
        f'<soapenv:Body><{method} xmlns="urn:vim25"><_this type="PropertyCollector">{xml_escape(this)}</_this>'
        f"{body}</{method}></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _retrieve_raw(conn: Connection, spec: str, page_size: int) -> Iterator[_Raw]:
    """Every object of a PropertyFilterSpec (its inner XML), page by page."""
    pc = conn.content.propertyCollector._moId
    request = _envelope(
        "RetrievePropertiesEx", pc, f"<specSet>{spec}</specSet><options><maxObjects>{page_size}</maxObjects></options>"
    )
    while request:
        token = yield from _soap_objects(conn, request)
        request = _envelope("ContinueRetrievePropertiesEx", pc, f"<token>{xml_escape(token)}</token>") if token else b""


def _soap_objects(conn: Connection, request: bytes) -> Iterator[_Raw]:
    """POST one PropertyCollector request; yields its objects, returns the result's token (or None).

    The response is parsed as it arrives (iterparse) and each object's elements are cleared once
    handed over. Measured against parsing each page whole (ET.fromstring): as fast or faster, with
    about 40 MB less memory per 1000-VM page.
    """
    conn._count()
    endpoint = conn.endpoint
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": conn.si._stub.versionId,
        "Cookie": conn._cookie(),
        "Accept-Encoding": "gzip, deflate",  # a 1000-VM page is ~4 MB of XML
    }
    timeout = urllib3.Timeout(connect=endpoint.timeout, read=READ_TIMEOUT)
    with _translated(endpoint):
        resp = conn._pool.request(
            "POST",
            f"{conn.base_url}/sdk",
            body=request,
            headers=headers,
            preload_content=False,
            retries=False,
            timeout=timeout,
        )
    try:
        if resp.status not in (200, 500):  # 500 carries a SOAP fault
            error = Unreachable if resp.status in (502, 503, 504) else VCenterError
            raise error(f"{endpoint.where}: HTTP {resp.status} from /sdk")
        token = None
        with _translated(endpoint):
            # ElementTree resolves no external entities, and expat >= 2.4.1 (Debian 12: 2.5) refuses
            # entity expansion bombs; pyVmomi parses the same responses with the same expat.
            for _, element in ET.iterparse(resp, events=("end",)):  # noqa: S314
                tag = element.tag
                if tag == f"{_V}objects":
                    yield _raw_object(endpoint, element)
                    element.clear()
                elif tag == f"{_V}token":
                    token = element.text
                elif tag == f"{{{_SOAPENV}}}Fault":
                    raise _soap_fault(endpoint, element)
        resp.release_conn()
        return token
    except ET.ParseError as exc:
        raise VCenterError(f"{endpoint.where}: unreadable SOAP response ({exc})") from None
    finally:
        resp.close()


def _raw_object(endpoint: _Endpoint, element: ET.Element) -> _Raw:
    obj = element.find(f"{_V}obj")
    props = {}
    for prop in element.iterfind(f"{_V}propSet"):
        name, val = prop.find(f"{_V}name"), prop.find(f"{_V}val")
        if name is not None and val is not None:
            props[name.text or ""] = val
    # Properties that could not be read are listed with a fault instead. Missing objects
    # (ManagedObjectNotFound) and unreadable properties are just left out, but a session that ended
    # must not read as an empty inventory (vcsim answers so rather than with a fault).
    for missing in element.iterfind(f"{_V}missingSet/{_V}fault/{_V}fault"):
        if _xsi_type(missing) == "NotAuthenticated":
            raise Unreachable(f"{endpoint.where}: {SESSION_ENDED}")
    return _Raw(obj.get("type", "") if obj is not None else "", (obj.text or "") if obj is not None else "", props)


def _soap_fault(endpoint: _Endpoint, fault: ET.Element) -> VCenterError:
    message = fault.findtext("faultstring") or ""
    detail = fault.find("detail")
    first = detail[0] if detail is not None and len(detail) else None  # <NotAuthenticatedFault xsi:type=...>
    kind = _xsi_type(first) or (first.tag.rpartition("}")[2].removesuffix("Fault") if first is not None else "")
    if kind == "NotAuthenticated":
        return Unreachable(f"{endpoint.where}: {SESSION_ENDED}")
    if kind == "InvalidLogin":
        return BadCredentials(f"{endpoint.where}: {CREDENTIALS_REJECTED}")
    return VCenterError(f"{endpoint.where}: {kind or 'SOAP fault'}: {message}")


# ---- inventory ----

_DEVICES = "config.hardware.device"
_VM_PROPERTIES = (
    "name",
    "parent",
    "config.instanceUuid",
    "config.uuid",
    "config.guestId",
    "config.guestFullName",
    "config.template",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.changeTrackingEnabled",
    "config.changeVersion",
    _DEVICES,
    "runtime.powerState",
    "runtime.host",
    "resourcePool",
    "snapshot",
)
_FOLDER_PROPERTIES = ("name", "parent", "childType")
_DATACENTER_PROPERTIES = ("name", "parent", "vmFolder")
_INVENTORY_PROPERTIES: dict[str, Sequence[str]] = {
    "Folder": _FOLDER_PROPERTIES,
    "Datacenter": _DATACENTER_PROPERTIES,
    "ComputeResource": ("name", "parent"),  # clusters too (a subtype)
    "HostSystem": ("name", "parent", "runtime.connectionState"),
    "ResourcePool": ("name", "parent", "owner"),  # vApps too
    "Datastore": ("name", "parent", "summary.capacity", "summary.freeSpace", "summary.type", "summary.url"),
    "VirtualMachine": _VM_PROPERTIES,
}
_ESCAPE = re.compile(r"%(2[fF]|5[cC]|25)")


def unescape_name(name: str) -> str:
    """Decode the escapes vCenter applies to ManagedEntity.name ("a%2fb" -> "a/b")."""
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group(1)).decode(), name)


def escape_name(name: str) -> str:
    """vCenter's escaping of entity names: % / \\ -> %25 %2f %5c (escapes already there are kept,
    as vCenter does, so escaping twice changes nothing)."""
    return re.sub(r"%(?!(2[fF]|5[cC]|25))", "%25", name).replace("/", "%2f").replace("\\", "%5c")


def fetch_inventory(conn: Connection, *, page_size: int = PAGE_SIZE, with_disks: bool = True) -> Inventory:
    """Datacenters, VM folders, clusters, hosts, resource pools, datastores and VMs (with disks) in a
    few round trips: one ContainerView over the root folder, read with RetrievePropertiesEx pages of
    page_size objects (about 11 pages for 10,000 VMs), then the view is destroyed. Which datacenter
    each object belongs to is worked out in memory from the parents.

    with_disks=False leaves config.hardware.device out (disks empty), which halves the data read.
    """
    start = conn.round_trips
    properties = dict(_INVENTORY_PROPERTIES)
    if not with_disks:
        properties["VirtualMachine"] = [p for p in _VM_PROPERTIES if p != _DEVICES]
    builder = _InventoryBuilder()
    with _container_view(conn, list(properties)) as view:
        for raw in _retrieve_raw(conn, _property_specs(properties) + _view_objects(view), page_size):
            builder.add(raw)
    return builder.inventory(conn.about, round_trips=conn.round_trips - start)


def fetch_vms(conn: Connection, morefs: Iterable[str], *, page_size: int = PAGE_SIZE) -> list[VmInfo]:
    """Re-read some VMs (and the folders above them) in one RetrievePropertiesEx; VMs that no longer
    exist are left out."""
    morefs = list(dict.fromkeys(morefs))
    if not morefs:
        return []
    properties = {"VirtualMachine": _VM_PROPERTIES, "Folder": _FOLDER_PROPERTIES, "Datacenter": _DATACENTER_PROPERTIES}
    spec = _property_specs(properties) + _objects_with_ancestors("VirtualMachine", morefs)
    builder = _InventoryBuilder()
    for raw in _retrieve_raw(
        conn, spec + "<reportMissingObjectsInResults>true</reportMissingObjectsInResults>", page_size
    ):
        builder.add(raw)
    return list(builder.inventory(conn.about, round_trips=0).vms)


def fetch_folders(conn: Connection) -> tuple[FolderInfo, ...]:
    """Every VM folder of every datacenter (three round trips, whatever the number of VMs)."""
    properties = {"Folder": _FOLDER_PROPERTIES, "Datacenter": _DATACENTER_PROPERTIES}
    builder = _InventoryBuilder()
    with _container_view(conn, list(properties)) as view:
        for raw in _retrieve_raw(conn, _property_specs(properties) + _view_objects(view), PAGE_SIZE):
            builder.add(raw)
    return builder.inventory(conn.about, round_trips=0).folders


def list_vms(conn: Connection, *, with_disks: bool = True, page_size: int = PAGE_SIZE) -> list[VmInfo]:
    """Every VM (and template) with its folder and disks: fetch_inventory(...).vms."""
    return list(fetch_inventory(conn, page_size=page_size, with_disks=with_disks).vms)


@contextmanager
def _container_view(conn: Connection, kinds: list[str]) -> Iterator[str]:
    """A recursive ContainerView of these types over the root folder; yields its moref."""
    content = conn.content
    with _translated(conn.endpoint):
        view = content.viewManager.CreateContainerView(content.rootFolder, [getattr(vim, k) for k in kinds], True)
    try:
        yield view._moId
    finally:
        with suppress(VCenterError), _translated(conn.endpoint):  # a failed read already says why
            view.DestroyView()


class _InventoryBuilder:
    """Collects objects as they stream in (VMs already reduced to plain values), then places each in
    its datacenter and folder by walking parents in memory."""

    def __init__(self) -> None:
        self.kind: dict[str, str] = {}
        self.parent: dict[str, _Ref | None] = {}
        self.name: dict[str, str] = {}  # as vCenter stores it (escaped)
        self.child_types: dict[str, list[str]] = {}
        self.vm_folder: dict[str, str] = {}  # datacenter -> its root VM folder
        self.owner: dict[str, str] = {}
        self.extra: dict[str, dict[str, Any]] = {}
        self.vms: list[dict[str, Any]] = []
        self._dc: dict[str, str | None] = {}
        self._path: dict[str, str] = {}

    def add(self, raw: _Raw) -> None:
        if "name" not in raw.props:  # missing object (fetch_vms) or one without read permission
            return
        moref = raw.moref
        self.kind[moref], self.name[moref], self.parent[moref] = raw.type, raw.text("name") or "", raw.ref("parent")
        if raw.type == "VirtualMachine":
            self.vms.append(_vm_values(raw))
        elif raw.type == "Folder":
            self.child_types[moref] = raw.strings("childType")
        elif raw.type == "Datacenter":
            if (vm_folder := raw.ref("vmFolder")) is not None:
                self.vm_folder[moref] = vm_folder.value
        elif raw.type in ("ResourcePool", "VirtualApp"):
            owner = raw.ref("owner")
            self.owner[moref] = owner.value if owner else ""
        elif raw.type == "HostSystem":
            self.extra[moref] = {"connection_state": raw.text("runtime.connectionState", "")}
        elif raw.type == "Datastore":
            self.extra[moref] = {
                "capacity_bytes": raw.number("summary.capacity"),
                "free_bytes": raw.number("summary.freeSpace"),
                "type": raw.text("summary.type", ""),
                "url": raw.text("summary.url", ""),
            }

    def datacenter(self, moref: str | None) -> str | None:
        """The datacenter above an object (walking parents, remembered for every object on the way)."""
        trail: list[str] = []
        found: str | None = None
        while moref is not None:
            if moref in self._dc:
                found = self._dc[moref]
                break
            if self.kind.get(moref) == "Datacenter":
                found = moref
                break
            trail.append(moref)
            parent = self.parent.get(moref)
            moref = parent.value if parent is not None else None
        for visited in trail:
            self._dc[visited] = found
        return found

    def folder_path(self, folder: str) -> str:
        """ "Production/Web" (escaped names) below the datacenter's root VM folder, "" for that folder."""
        if folder not in self._path:
            parent = self.parent.get(folder)
            if parent is None or parent.type != "Folder" or folder in self.vm_folder.values():
                self._path[folder] = ""
            else:
                above = self.folder_path(parent.value)
                self._path[folder] = f"{above}/{self.name[folder]}" if above else self.name[folder]
        return self._path[folder]

    def _of_kind(self, *kinds: str) -> list[str]:
        return [moref for moref, kind in self.kind.items() if kind in kinds]

    def inventory(self, about_info: AboutInfo, *, round_trips: int) -> Inventory:
        return Inventory(
            about=about_info,
            datacenters=tuple(
                DatacenterInfo(dc, unescape_name(self.name[dc]), self.vm_folder.get(dc, ""))
                for dc in self._of_kind("Datacenter")
            ),
            folders=tuple(self._folders()),
            clusters=tuple(
                ClusterInfo(c, unescape_name(self.name[c]), self.datacenter(c) or "")
                for c in self._of_kind("ClusterComputeResource")
            ),
            hosts=tuple(self._hosts()),
            resource_pools=tuple(self._pools()),
            datastores=tuple(
                DatastoreInfo(ds, unescape_name(self.name[ds]), self.datacenter(ds) or "", **self.extra[ds])
                for ds in self._of_kind("Datastore")
            ),
            vms=tuple(self._vm(values) for values in self.vms),
            round_trips=round_trips,
        )

    def _folders(self) -> Iterator[FolderInfo]:
        roots = set(self.vm_folder.values())
        for folder in self._of_kind("Folder"):
            if "VirtualMachine" not in self.child_types.get(folder, []):
                continue
            parent = self.parent.get(folder)
            is_root = folder in roots
            yield FolderInfo(
                moref=folder,
                name=unescape_name(self.name[folder]),
                parent_moref=None if is_root or parent is None or parent.type != "Folder" else parent.value,
                datacenter_moref=self.datacenter(folder) or "",
                is_vm_folder=True,
                is_root=is_root,
            )

    def _hosts(self) -> Iterator[HostInfo]:
        for host in self._of_kind("HostSystem"):
            parent = self.parent.get(host)
            cluster = parent.value if parent is not None and parent.type == "ClusterComputeResource" else None
            yield HostInfo(
                host, unescape_name(self.name[host]), cluster, self.datacenter(host) or "", **self.extra[host]
            )

    def _pools(self) -> Iterator[ResourcePoolInfo]:
        for pool in self._of_kind("ResourcePool", "VirtualApp"):
            parent = self.parent.get(pool)
            above = parent.value if parent is not None and parent.type in ("ResourcePool", "VirtualApp") else None
            yield ResourcePoolInfo(
                pool, unescape_name(self.name[pool]), above, self.owner.get(pool, ""), self.datacenter(pool) or ""
            )

    def _vm(self, values: dict[str, Any]) -> VmInfo:
        parent: _Ref | None = values.pop("parent")
        folder = parent.value if parent is not None and parent.type == "Folder" else None
        datacenter = self.datacenter(values["moref"])
        return VmInfo(
            **values,
            datacenter_moref=datacenter,
            datacenter=self.name.get(datacenter) if datacenter else None,
            folder_path=self.folder_path(folder) if folder else "",
            folder_moref=folder,
        )


def _vm_values(raw: _Raw) -> dict[str, Any]:
    """A VM's own fields (all but where it sits), read from its elements before they are cleared."""
    host, pool = raw.ref("runtime.host"), raw.ref("resourcePool")
    devices = raw.props.get(_DEVICES)
    snapshot = raw.props.get("snapshot")
    return {
        "moref": raw.moref,
        "parent": raw.ref("parent"),
        "name": unescape_name(raw.text("name") or ""),
        "instance_uuid": raw.text("config.instanceUuid"),
        "bios_uuid": raw.text("config.uuid"),
        "power_state": raw.text("runtime.powerState", ""),
        "guest_id": raw.text("config.guestId"),
        "guest_full_name": raw.text("config.guestFullName"),
        "is_template": raw.flag("config.template"),
        "host_moref": host.value if host else None,
        "resource_pool_moref": pool.value if pool else None,
        "num_cpu": raw.number("config.hardware.numCPU"),
        "memory_mb": raw.number("config.hardware.memoryMB"),
        "snapshot_count": _snapshot_count(snapshot) if snapshot is not None else 0,
        "cbt_enabled": raw.flag("config.changeTrackingEnabled"),
        "change_version": raw.text("config.changeVersion"),
        "disks": tuple(_disk_info(d) for d in devices if _xsi_type(d) == "VirtualDisk") if devices is not None else (),
    }


def _snapshot_count(info: ET.Element) -> int:
    """Nodes of a VirtualMachineSnapshotInfo's tree: each root and child list entry is one snapshot."""
    nodes = (f"{_V}rootSnapshotList", f"{_V}childSnapshotList")
    return sum(1 for element in info.iter() if element.tag in nodes)


_BACKINGS = {
    "VirtualDiskFlatVer1BackingInfo": "flat",
    "VirtualDiskFlatVer2BackingInfo": "flat",
    "VirtualDiskSparseVer1BackingInfo": "sparse",
    "VirtualDiskSparseVer2BackingInfo": "sparse",
    "VirtualDiskSeSparseBackingInfo": "sparse",
}
_RDM_MODES = {"physicalMode": "rdm_physical", "virtualMode": "rdm_virtual"}


def _disk_info(disk: ET.Element) -> DiskInfo:
    backing = disk.find(f"{_V}backing")
    backing_type = _xsi_type(backing)
    file_name = (backing.findtext(f"{_V}fileName") if backing is not None else None) or ""
    match = re.match(r"\[([^\]]*)\] ?(.*)", file_name)
    datastore = backing.find(f"{_V}datastore") if backing is not None else None
    thin = backing.findtext(f"{_V}thinProvisioned") if backing is not None else None
    if backing_type == "VirtualDiskRawDiskMappingVer1BackingInfo":
        kind = _RDM_MODES.get(backing.findtext(f"{_V}compatibilityMode") or "", "other")  # type: ignore[union-attr]
    else:
        kind = _BACKINGS.get(backing_type, "other")
    capacity = _int_text(disk, "capacityInBytes") or (_int_text(disk, "capacityInKB") or 0) * 1024
    return DiskInfo(
        key=_int_text(disk, "key") or 0,
        label=disk.findtext(f"{_V}deviceInfo/{_V}label") or "",
        capacity_bytes=capacity,
        file_name=file_name,
        datastore_name=match.group(1) if match else "",
        datastore_moref=(datastore.text or None) if datastore is not None else None,
        path=match.group(2) if match else file_name,
        thin=None if thin is None or kind != "flat" else thin.strip() == "true",
        disk_mode=(backing.findtext(f"{_V}diskMode") if backing is not None else None) or "",
        backing=kind,
        controller_key=_int_text(disk, "controllerKey"),
        unit_number=_int_text(disk, "unitNumber"),
    )


def _int_text(element: ET.Element, child: str) -> int | None:
    text = element.findtext(f"{_V}{child}")
    return int(text) if text else None


# ---- live changes ----


class ChangeWatcher:
    """Reports VMs and VM folders that change, through WaitForUpdatesEx on a PropertyCollector of its
    own (CreatePropertyCollector: other readers of the connection are not disturbed). Use as a
    context manager; close() destroys the collector and its view.

    The first wait() returns everything as entered (the initial state); skip_initial=True consumes
    it at once. A dead connection or an ended session raises Unreachable: reconnect and start a new
    watcher (and re-read the inventory: changes in between were not seen).
    """

    VM_PROPERTIES = (
        "name",
        "parent",
        "runtime.powerState",
        "config.template",
        "runtime.host",
        "resourcePool",
        "config.changeVersion",  # changes when disks are added, removed or resized
    )
    FOLDER_PROPERTIES = ("name", "parent", "childType")

    def __init__(self, conn: Connection, *, skip_initial: bool = False) -> None:
        self.conn = conn
        self.version = ""
        self._cancelled = threading.Event()
        content = conn.content
        with _translated(conn.endpoint):
            self._pc = content.propertyCollector.CreatePropertyCollector()
            try:
                self._view = content.viewManager.CreateContainerView(
                    content.rootFolder, [vim.VirtualMachine, vim.Folder], True
                )
                # One filter per type: vcsim 0.24.2 panics (and drops the connection) when a filter
                # with several types sees a change of a VM deleted in the same batch (powered off,
                # then destroyed), as it looks the deleted VM's type up for the other type's spec.
                self._pc.CreateFilter(self._filter(vim.VirtualMachine, self.VM_PROPERTIES), partialUpdates=True)
                self._pc.CreateFilter(self._filter(vim.Folder, self.FOLDER_PROPERTIES), partialUpdates=True)
            except BaseException:
                self.close()
                raise
        if skip_initial:
            self._consume_initial()

    def _filter(self, kind: type, properties: Sequence[str]) -> vmodl.query.PropertyCollector.FilterSpec:
        pcq = vmodl.query.PropertyCollector
        return pcq.FilterSpec(
            objectSet=[
                pcq.ObjectSpec(
                    obj=self._view,
                    skip=True,
                    selectSet=[pcq.TraversalSpec(name="view", type=vim.view.ContainerView, path="view")],
                )
            ],
            propSet=[pcq.PropertySpec(type=kind, pathSet=list(properties))],
        )

    def _consume_initial(self) -> None:
        while True:
            update = self._wait_once(0)
            if update is None or not update.truncated:
                return

    def wait(self, timeout_seconds: float) -> ChangeSet | None:
        """Changes since the last call, as soon as there are some; None after timeout_seconds without,
        or once cancel() is called."""
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        while not self._cancelled.is_set():
            remaining = deadline - time.monotonic()
            update = self._wait_once(min(WAIT_SLICE, max(0, math.ceil(remaining))))
            if update is not None:
                return _change_set(update)
            if time.monotonic() >= deadline:
                return None
        self._cancelled.clear()
        return None

    def cancel(self) -> None:
        """Make the wait() pending in another thread (or the next one) return None at once: for
        shutting down without waiting out maxWaitSeconds."""
        self._cancelled.set()
        with suppress(VCenterError), _translated(self.conn.endpoint):
            self._pc.CancelWaitForUpdates()

    def _wait_once(self, max_wait: int) -> vmodl.query.PropertyCollector.UpdateSet | None:
        # The HTTP read timeout (READ_TIMEOUT) is longer than max_wait (at most WAIT_SLICE): a server
        # that dies without closing the connection is noticed then, not never.
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=max_wait)
        with _translated(self.conn.endpoint):
            try:
                update = self._pc.WaitForUpdatesEx(version=self.version, options=options)
            except vmodl.fault.RequestCanceled:  # cancel()
                return None
            except vmodl.fault.ManagedObjectNotFound:  # our collector is gone: vCenter restarted
                raise Unreachable(
                    f"{self.conn.endpoint.where}: the change collector is gone (vCenter restarted)"
                ) from None
        if update is not None:
            self.version = update.version
        return update

    def close(self) -> None:
        with suppress(Exception):  # on a dead connection there is nothing left to clean up
            if getattr(self, "_view", None) is not None:
                self._view.DestroyView()
        with suppress(Exception):
            self._pc.DestroyPropertyCollector()

    def __enter__(self) -> ChangeWatcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _change_set(update: vmodl.query.PropertyCollector.UpdateSet) -> ChangeSet:
    seen: dict[str, set[str]] = {"enter": set(), "modify": set(), "leave": set()}
    folders = False
    for filter_update in update.filterSet or []:
        for object_update in filter_update.objectSet or []:
            if isinstance(object_update.obj, vim.Folder):
                folders = True
            else:
                seen[str(object_update.kind)].add(object_update.obj._moId)
    # A VM that left and entered was moved (vcsim reports a move so, in either order): it exists.
    # One that was modified and left (powered off, then destroyed) is gone: morefs are never reused.
    removed = seen["leave"] - seen["enter"]
    changed = (seen["enter"] | seen["modify"]) - removed
    return ChangeSet(frozenset(changed), frozenset(removed), folders, update.version)


# ---- changes to the inventory ----


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


# ---- snapshots and tasks ----


def create_snapshot(conn: Connection, vm_moref: str, name: str, description: str, quiesce: bool) -> str:
    """Snapshot a VM without its memory; returns the snapshot's moref."""
    vm = vim.VirtualMachine(vm_moref, conn.si._stub)
    with _translated(conn.endpoint):
        task = vm.CreateSnapshot_Task(name=name, description=description, memory=False, quiesce=quiesce)
    return _wait(conn, task)._moId


def remove_snapshot(conn: Connection, snapshot_moref: str) -> None:
    """Delete one snapshot (not its children), merging its changes into the parent disk."""
    snapshot = vim.vm.Snapshot(snapshot_moref, conn.si._stub)
    with _translated(conn.endpoint):
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
            kind = _fault_name(fault) if fault is not None else "error"
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
    """Read length bytes at offset of a datastore file through vCenter's /folder API, with the same
    TLS checks as the SOAP connection.

    datacenter and datastore are inventory names as vCenter has them (VmInfo.datacenter,
    DiskInfo.datastore_name); path is relative to the datastore ("web-01/web-01-flat.vmdk").
    Returns fewer bytes at the end of the file.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must not be negative")
    if length == 0:
        return b""
    query = urlencode({"dcPath": datacenter, "dsName": datastore}, quote_via=quote)
    url = f"{conn.base_url}/folder/{quote(path, safe='/')}?{query}"
    headers = {"Range": f"bytes={offset}-{offset + length - 1}", "Cookie": conn._cookie()}
    timeout = urllib3.Timeout(connect=conn.endpoint.timeout, read=READ_TIMEOUT)
    with _translated(conn.endpoint):
        resp = conn._pool.request("GET", url, headers=headers, preload_content=False, retries=False, timeout=timeout)
    try:
        return _ranged_body(conn, resp, datastore, path, offset, length)
    finally:
        if resp.length_remaining == 0:  # all read: the connection can serve the next request
            resp.release_conn()
        else:
            resp.close()


def _ranged_body(
    conn: Connection, resp: urllib3.BaseHTTPResponse, datastore: str, path: str, offset: int, length: int
) -> bytes:
    if resp.status == 206:
        return _read_exactly(conn, resp, length)
    if resp.status == 416:  # offset at or past the end
        return b""
    if resp.status == 200:  # Range ignored: skip to offset in the stream
        while offset > 0:
            skipped = _read_exactly(conn, resp, min(offset, MiB))
            if not skipped:
                return b""
            offset -= len(skipped)
        return _read_exactly(conn, resp, length)
    if resp.status in (401, 403):
        raise BadCredentials(f"{conn.endpoint.where}: datastore access refused (HTTP {resp.status})")
    if resp.status in (502, 503, 504):
        raise Unreachable(f"{conn.endpoint.where}: HTTP {resp.status} for [{datastore}] {path}")
    raise VCenterError(f"[{datastore}] {path}: HTTP {resp.status}")


def _read_exactly(conn: Connection, resp: urllib3.BaseHTTPResponse, length: int) -> bytes:
    """Up to length bytes of the body: fewer only at its end."""
    chunks, remaining = [], length
    with _translated(conn.endpoint):
        while remaining and (chunk := resp.read(remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)
