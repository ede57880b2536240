"""TLS checks and vCenter sessions: Endpoint (where, and how TLS is checked: pinned thumbprint, or CA
and host name), connect(), Connection, fetch_server_identity(), and translated(), which turns pyVmomi
faults and socket errors into this package's exceptions."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import urllib3
from cryptography import x509
from pyVmomi import vim, vmodl
from pyVmomi.SoapAdapter import SoapStubAdapter
from pyVmomi.VmomiSupport import GetServiceVersions, ManagedObject, versionIdMap
from urllib3.util.wait import wait_for_read

from .errors import (
    CREDENTIALS_REJECTED,
    SESSION_ENDED,
    BadCredentials,
    CertificateNotTrusted,
    NotAVCenter,
    NotFound,
    ThumbprintMismatch,
    Unreachable,
    VCenterError,
)
from .vmomi import managed

# pyVmomi's SOAP stub and its version list are unannotated (its stubs cover data and managed objects
# only): called through Any, so the stub is Any wherever it flows.
_SoapStubAdapter: Any = SoapStubAdapter
_service_versions: Any = GetServiceVersions

CONNECT_TIMEOUT = 10.0  # seconds: default for TCP connects, TLS handshakes and the API probe
READ_TIMEOUT = 120.0  # seconds, for SOAP calls and datastore reads
MiB = 1024 * 1024


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
class Endpoint:
    """Where vCenter is and how its TLS is checked: what connect() needs besides the credentials.

    With thumbprint, the certificate's SHA-256 must equal it (no CA or host name check, the way to
    trust a self-signed certificate), else ThumbprintMismatch; without, verify_tls checks CA and host
    name against the system's CAs, else CertificateNotTrusted (carrying the thumbprint to show);
    verify_tls=False checks nothing. protocol="http" is for the simulator only (the thumbprint is then
    ignored). timeout bounds TCP connects, TLS handshakes and the API probe; later SOAP calls and
    datastore reads may take up to READ_TIMEOUT.
    """

    host: str  # a name or an address; an IPv6 address may come in brackets, as in a URL
    port: int
    protocol: str = "https"
    verify_tls: bool = True
    thumbprint: str | None = None  # SHA-256; kept normalised ("AA:BB:..."), None over plain HTTP
    timeout: float = CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if self.protocol not in ("https", "http"):
            raise ValueError(f"protocol must be https or http, not {self.protocol!r}")
        # Normalised once here, so every check compares like with like (frozen: set as __init__ would).
        pin = normalize_thumbprint(self.thumbprint) if self.thumbprint and self.protocol == "https" else None
        object.__setattr__(self, "host", self.host.strip("[]"))
        object.__setattr__(self, "thumbprint", pin)

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
        if self.thumbprint:
            return _PinnedContext(self.thumbprint, self.where)
        return ssl.create_default_context() if self.verify_tls else _unverified_context()

    def pool(self) -> urllib3.PoolManager:
        """For the datastore API and the bulk SOAP reads: the same checks through urllib3."""
        if self.protocol == "http":
            return urllib3.PoolManager(maxsize=8)
        if self.thumbprint:  # urllib3 compares SHA-256 fingerprints itself, and then counts them as verified
            fingerprint = self.thumbprint.replace(":", "")
            return urllib3.PoolManager(maxsize=8, cert_reqs="CERT_NONE", assert_fingerprint=fingerprint)
        # urllib3's own context loads the system's CAs, as ssl.create_default_context() does.
        return urllib3.PoolManager(maxsize=8, cert_reqs="CERT_REQUIRED" if self.verify_tls else "CERT_NONE")


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
    endpoint = Endpoint(host, port, timeout=timeout)  # for its host without brackets, and where
    host, where = endpoint.host, endpoint.where
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
        raise Unreachable(f"{where} cannot be reached ({os_message(exc)})") from None
    if not der:
        raise NotAVCenter(f"{where} presents no TLS certificate")
    return der


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused", "timed out", ...)."""
    cause = exc.__cause__ if isinstance(exc, urllib3.exceptions.NewConnectionError) else exc
    if isinstance(cause, OSError):
        return os_message(cause)
    return str(exc) or type(exc).__name__


def os_message(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _tls_failure(endpoint: Endpoint, exc: BaseException) -> VCenterError:
    """Name a failed TLS handshake: pin mismatch, untrusted certificate, or a dropped connection."""
    try:
        identity = fetch_server_identity(endpoint.host, endpoint.port, endpoint.timeout)
    except VCenterError as failure:
        return failure
    actual = identity.thumbprint_sha256
    if endpoint.thumbprint:
        if actual != endpoint.thumbprint:
            return _mismatch(endpoint.where, endpoint.thumbprint, actual)
    elif endpoint.verify_tls and not identity.trusted:
        reason = identity.trust_problem or "not trusted"
        return CertificateNotTrusted(
            f"{endpoint.where}: the TLS certificate is not trusted ({reason}); its SHA-256 thumbprint is "
            f"{actual}: check it with the vCenter administrator, then pin it",
            thumbprint=actual,
            reason=reason,
        )
    return Unreachable(f"{endpoint.where} cannot be reached (TLS failed: {exc})")


# ---- connection ----


class ClosedOnExit:
    """For classes with a close(): used as a context manager, the with block's end closes them."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_Managed = TypeVar("_Managed", bound=ManagedObject)


class Connection(ClosedOnExit):
    """A logged-in vCenter session; close() logs out. Use as a context manager.

    Thread-safe for calls from several threads (pyVmomi and urllib3 pool their HTTP connections).
    """

    def __init__(
        self,
        si: vim.ServiceInstance,
        content: vim.ServiceInstanceContent,
        endpoint: Endpoint,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.si = si
        self.content = content
        self.endpoint = endpoint
        # (user name, password) of connect(), for vCenter's REST API (tags.py), which does not accept
        # the SOAP session's cookie and signs in on its own. Never logged.
        self.credentials = credentials
        # Optional in pyVmomi's types (an ESXi host may lack them); connect() checked them already.
        if content.sessionManager is None or content.viewManager is None:
            raise NotAVCenter(f"{endpoint.where} is not a vCenter Server")
        self.session_manager: vim.SessionManager = content.sessionManager
        self.view_manager: vim.view.ViewManager = content.viewManager
        self.about = _about_info(content.about)
        self.base_url = endpoint.base_url  # "https://vc.example:443", for /sdk and /folder
        self.pool = endpoint.pool()  # for the raw requests (datastore.py, soap.py)
        self._lock = threading.Lock()
        self._round_trips = 0
        stub = si._stub
        invoke, get_connection = stub.InvokeMethod, stub.GetConnection

        def counted(*args: Any, **kwargs: Any) -> Any:  # every pyVmomi SOAP call goes through here
            self.count_round_trip()
            return invoke(*args, **kwargs)

        def live_connection() -> http.client.HTTPConnection:
            # pyVmomi reuses pooled keep-alive connections blindly: one the server has closed (idle
            # timeout, restart) would fail the next call. An idle connection with something to read
            # has been closed (or is broken): close it, and http.client opens a new one (TLS checked).
            conn: http.client.HTTPConnection = get_connection()
            if conn.sock is not None and wait_for_read(conn.sock, timeout=0.0):
                conn.close()
            return conn

        stub.InvokeMethod, stub.GetConnection = counted, live_connection

    @property
    def round_trips(self) -> int:
        """SOAP requests sent on this connection so far (pyVmomi's and the bulk reads')."""
        return self._round_trips

    def count_round_trip(self) -> None:
        """Count one more SOAP request (the raw bulk reads count theirs here too)."""
        with self._lock:
            self._round_trips += 1

    def cookie(self) -> str:
        """The session's cookie: /folder and /sdk accept it, so raw requests need no second login."""
        # pyVmomi keeps the raw Set-Cookie value; its first "name=value" pair is the cookie.
        return str(self.si._stub.cookie).split(";", 1)[0].strip()

    def soap_action(self) -> str:
        """The SOAPAction header pyVmomi sends (its API version id), for raw requests to /sdk."""
        return str(self.si._stub.versionId)

    def ref(self, kind: type[_Managed], moref: str) -> _Managed:
        """A reference to the managed object moref of this kind (vim.Folder, "group-v3") on this session:
        no round trip, its methods call vCenter."""
        return managed(kind, moref, self.si._stub)

    def close(self) -> None:
        with suppress(Exception):  # logging out of a dead session is not worth an error
            self.session_manager.Logout()
        self.si._stub.DropConnections()
        self.pool.clear()


@contextmanager
def translated(endpoint: Endpoint | None = None) -> Iterator[None]:
    """Turn pyVmomi faults, TLS and socket errors into this package's exceptions (errors.py)."""
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
        raise Unreachable(f"{place} cannot be reached ({fault_message(exc) or 'connection failed'})") from exc
    except vmodl.fault.ManagedObjectNotFound as exc:
        gone = getattr(exc.obj, "_moId", None) or "the object"
        raise NotFound(f"{place}: {gone} does not exist (any more)") from exc
    except vmodl.MethodFault as exc:
        raise VCenterError(f"{place}: {fault_name(exc)}: {fault_message(exc)}") from exc
    except (ssl.SSLError, urllib3.exceptions.SSLError) as exc:
        if endpoint is None:
            raise Unreachable(f"{place} cannot be reached (TLS failed: {exc})") from exc
        raise _tls_failure(endpoint, exc) from None
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        raise Unreachable(f"{place} cannot be reached ({_reason(exc)})") from exc


def fault_name(fault: BaseException) -> str:
    """ "InvalidLogin" for vim.fault.InvalidLogin."""
    return type(fault).__name__.rsplit(".", 1)[-1]


def fault_message(fault: BaseException) -> str:
    """A pyVmomi fault's message (its msg, which pyVmomi's stubs leave out), "" when it has none."""
    return str(getattr(fault, "msg", None) or "")


def connect(endpoint: Endpoint, username: str, password: str) -> Connection:
    """Log in to vCenter (one Login: BadCredentials is never retried here, and should not be by callers),
    with the TLS checks endpoint asks for (see Endpoint)."""
    version = _api_version(endpoint)
    stub = _SoapStubAdapter(
        host=endpoint.host,
        port=endpoint.port if endpoint.protocol == "https" else -endpoint.port,  # pyVmomi's way of saying plain HTTP
        version=version,
        sslContext=endpoint.ssl_context(),
        httpConnectionTimeout=max(READ_TIMEOUT, endpoint.timeout),
    )
    si = managed(vim.ServiceInstance, "ServiceInstance", stub)
    try:
        with translated(endpoint):
            content = si.RetrieveContent()
            sessions = content.sessionManager
            # Checked before the password is sent (an ESXi host answers the same API).
            if content.about.apiType != "VirtualCenter" or sessions is None or content.viewManager is None:
                raise NotAVCenter(f"{endpoint.where} is {content.about.fullName}, not a vCenter Server")
            sessions.Login(username, password, None)
    except BaseException:
        stub.DropConnections()
        raise
    return Connection(si, content, endpoint, (username, password))


def _api_version(endpoint: Endpoint) -> str:
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
        with translated(endpoint):
            http_conn.connect()  # TLS problems and closed ports are named by translated
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
        root = ET.fromstring(body)  # noqa: S314 - see soap._soap_objects
    except ET.ParseError:
        raise NotAVCenter(f"{where} does not serve the vSphere API (no version list)") from None
    offered = {
        version.text
        for namespace in root.iter("namespace")
        if namespace.findtext("name") in (None, "urn:vim25")
        for version in [namespace.find("version"), *namespace.findall("priorVersions/version")]
        if version is not None and version.text
    }
    for name in _service_versions("vim25"):
        if versionIdMap[name] in offered:
            return str(name)
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
