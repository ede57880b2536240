"""Datastore files through vCenter's /folder HTTP API: ranged reads (read_datastore_file, DatastoreFile)
and streamed writes (DatastoreFile.write)."""

from __future__ import annotations

import http.client
import mmap
import re
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import quote, urlencode

import urllib3
from urllib3.util.wait import wait_for_read

from .connection import READ_TIMEOUT, ClosedOnExit, Connection, Endpoint, MiB, os_message, translated
from .errors import Cancelled, NotFound, Unreachable, VCenterError, http_failure

_T = TypeVar("_T")


def _folder_target(datacenter: str, datastore: str, path: str) -> str:
    """The /folder request target of a datastore file ("/folder/web-01/web-01.vmdk?dcPath=DC&dsName=ds1")."""
    query = urlencode({"dcPath": datacenter, "dsName": datastore}, quote_via=quote)
    return f"/folder/{quote(path, safe='/')}?{query}"


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
    url = conn.base_url + _folder_target(datacenter, datastore, path)
    headers = {"Range": f"bytes={offset}-{offset + length - 1}", "Cookie": conn.cookie()}
    timeout = urllib3.Timeout(connect=conn.endpoint.timeout, read=READ_TIMEOUT)
    with translated(conn.endpoint):
        resp = conn.pool.request("GET", url, headers=headers, preload_content=False, retries=False, timeout=timeout)
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
    raise datastore_failure(conn.endpoint.where, resp.status, f"[{datastore}] {path}", writing=False)


def _read_exactly(conn: Connection, resp: urllib3.BaseHTTPResponse, length: int) -> bytes:
    """Up to length bytes of the body: fewer only at its end."""
    chunks, remaining = [], length
    with translated(conn.endpoint):
        while remaining and (chunk := resp.read(remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)


CHUNK_SIZE = 4 * MiB  # the unit of DatastoreFile reads: large enough for HTTP overhead not to matter


def read_buffer(size: int = CHUNK_SIZE) -> memoryview:
    """A zeroed, page-aligned buffer for DatastoreFile.readinto, to be reused for every read.

    Page alignment matters: reading plain HTTP into a bytearray (malloc puts its data 16 bytes past
    a page boundary) measured about a third slower here than into a page-aligned buffer.
    """
    return memoryview(mmap.mmap(-1, size))


class DatastoreFile(ClosedOnExit):
    """A datastore file read by byte ranges through vCenter's /folder API, for whole disks, or written
    whole (write).

    Each readinto() is one GET with Range, read straight into the caller's buffer (no copy in Python).
    Connections are kept alive and reused (no TLS handshake per read), checked as the SOAP connection
    is (pinned thumbprint, or CA and host name). Several threads may read at once: each takes its own
    connection from a small pool. Use as a context manager, or close().

    datacenter and datastore are names as vCenter has them (VmInfo.datacenter, DiskInfo.datastore_name);
    path is relative to the datastore ("web-01/web-01-flat.vmdk").
    """

    def __init__(
        self, conn: Connection, datacenter: str, datastore: str, path: str, *, size: int | None = None
    ) -> None:
        self.conn = conn
        self.name = f"[{datastore}] {path}"
        self._target = _folder_target(datacenter, datastore, path)
        self._size = size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0  # HTTP requests sent, for statistics

    @property
    def size(self) -> int:
        """The file's size in bytes (a HEAD request the first time, unless given)."""
        if self._size is None:
            self._size = self._fetch_size()
        return self._size

    def readinto(self, offset: int, buffer: memoryview | bytearray) -> int:
        """Fill buffer with the file's bytes from offset, in one request; returns how many were read:
        fewer only at the end of the file, 0 at or past it. Read CHUNK_SIZE bytes at a time, into a
        buffer from read_buffer()."""
        if offset < 0:
            raise ValueError("offset must not be negative")
        view = memoryview(buffer).cast("B")
        length = len(view) if self._size is None else max(0, min(len(view), self._size - offset))
        if length == 0:
            return 0
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        return self._request("GET", headers, lambda resp: self._ranged_into(resp, offset, view[:length]))

    def write(
        self,
        source: ByteSource,
        size: int,
        *,
        progress: Callable[[int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        """Create or replace the file with the next size bytes of source, streamed in one HTTP PUT (see
        upload(); this is upload() fed from a file-like source).

        Memory stays at one CHUNK_SIZE buffer whatever the size: source is read (readinto when it has
        it, so a pipe or a file both do) and sent a chunk at a time. progress(bytes sent) is called
        after each chunk; should_cancel() before each, True raising Cancelled. ValueError when source
        ends before size bytes; the failures of upload() otherwise.
        """
        buffer = memoryview(bytearray(max(1, min(size, CHUNK_SIZE))))
        with self.upload(size) as upload:
            while upload.sent < size:
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"{self.name}: writing cancelled after {upload.sent} of {size} bytes")
                n = _read_some(source, buffer[: min(len(buffer), size - upload.sent)])
                if n == 0:
                    raise ValueError(f"{self.name}: the source ended after {upload.sent} of {size} bytes")
                upload.write(buffer[:n])
                if progress is not None:
                    progress(upload.sent)

    def upload(self, size: int) -> Upload:
        """Start creating or replacing the file with one HTTP PUT of size bytes (the session's cookie,
        TLS checked as the SOAP connection is; on a connection of its own): the caller write()s the
        body, in pieces of any size, inside a with block, whose end reads vCenter's answer.

        vCenter writes a file from one request only (the simulator's ranged PUTs are its own
        extension), so a failed or cancelled write leaves a partial file: write it again whole.
        Failures: NotFound (HTTP 404: no such datacenter or datastore, or a directory missing),
        Unreachable (the connection refused or reset, HTTP 401: the session ended, 502-504),
        VCenterError (HTTP 403: the user may not write datastore files; any other status), ValueError
        when the body is not exactly size bytes.
        """
        if size < 0:
            raise ValueError("size must not be negative")
        return Upload(self.conn, self._target, self.name, size)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for http_conn in idle:
            http_conn.close()

    # ---- HTTP ----

    def _request(self, method: str, headers: dict[str, str], handle: Callable[[http.client.HTTPResponse], _T]) -> _T:
        """Send one request on a pooled connection and handle its response; a kept-alive connection
        that the server closed meanwhile is replaced once (GET and HEAD may be repeated)."""
        headers = {**headers, "Cookie": self.conn.cookie()}
        for attempt in (1, 2):
            http_conn, reused = self._checkout()
            try:
                with translated(self.conn.endpoint):
                    try:
                        http_conn.request(method, self._target, headers=headers)
                        resp = http_conn.getresponse()
                    except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                        if reused and attempt == 1:
                            http_conn.close()
                            continue
                        raise
                    with self._lock:
                        self.requests += 1
                    result = handle(resp)
            except BaseException:
                http_conn.close()
                raise
            self._checkin(http_conn, resp)
            return result
        raise AssertionError("unreachable")  # the second attempt returns or raises

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.name}: read after close()")
            while self._idle:
                http_conn = self._idle.pop()
                # An idle connection with something to read was closed by the server (or broke).
                if http_conn.sock is not None and not wait_for_read(http_conn.sock, timeout=0.0):
                    return http_conn, True
                http_conn.close()
        return self._connect(), False

    def _checkin(self, http_conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        # Reusable only with the whole body read and the server keeping the connection open.
        if resp.isclosed() and not resp.will_close and http_conn.sock is not None:
            with self._lock:
                if not self._closed and len(self._idle) < 8:
                    self._idle.append(http_conn)
                    return
        http_conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        return _http_connection(self.conn.endpoint)

    def _fetch_size(self) -> int:
        size = self._request("HEAD", {}, self._head_size)
        if size is None:  # HEAD not answered usefully: the size is in a one-byte GET's Content-Range
            size = self._request("GET", {"Range": "bytes=0-0"}, self._range_total)
        return size

    def _head_size(self, resp: http.client.HTTPResponse) -> int | None:
        resp.read()
        if resp.status == 200 and resp.getheader("Content-Length", "").isdigit():
            return int(resp.getheader("Content-Length", ""))
        if resp.status in (400, 405, 501):
            return None
        raise self._status_error(resp)

    def _range_total(self, resp: http.client.HTTPResponse) -> int:
        if resp.status == 206:
            resp.read()
            total = (resp.getheader("Content-Range") or "").rpartition("/")[2]
            if total.isdigit():
                return int(total)
        if resp.status == 416:  # an empty file
            resp.read()
            return 0
        if resp.status == 200 and resp.getheader("Content-Length", "").isdigit():
            return int(resp.getheader("Content-Length", ""))  # Range ignored; the body is dropped
        raise self._status_error(resp)

    def _ranged_into(self, resp: http.client.HTTPResponse, offset: int, view: memoryview) -> int:
        if resp.status == 206:
            start = re.match(r"bytes (\d+)-", resp.getheader("Content-Range") or "")
            if start is None or int(start.group(1)) != offset:
                raise VCenterError(f"{self.name}: asked for bytes from {offset}, got {resp.getheader('Content-Range')}")
            return _fill(resp, view)
        if resp.status == 416:  # at or past the end
            resp.read()
            return 0
        if resp.status == 200:  # Range ignored: skip to offset (the connection is not reused)
            skipped = 0
            while skipped < offset and (n := resp.readinto(view[: min(len(view), offset - skipped)])):
                skipped += n
            return _fill(resp, view) if skipped == offset else 0
        raise self._status_error(resp)

    def _status_error(self, resp: http.client.HTTPResponse) -> VCenterError:
        return datastore_failure(self.conn.endpoint.where, resp.status, self.name, writing=False)


def _fill(resp: http.client.HTTPResponse, view: memoryview) -> int:
    """Read the body into view until it is full or the body ends."""
    filled = 0
    while filled < len(view) and (n := resp.readinto(view[filled:])):
        filled += n
    return filled


class Upload:
    """One HTTP PUT of a datastore file in progress (DatastoreFile.upload): write() sends body bytes as
    they come, with no copy; the with block's end reads the answer (or, on an error, drops the
    connection, which tells vCenter the request is incomplete)."""

    def __init__(self, conn: Connection, target: str, name: str, size: int) -> None:
        self.conn, self.name, self.size = conn, name, size
        self.sent = 0
        self._target = target
        self._http: http.client.HTTPConnection | None = None

    def __enter__(self) -> Upload:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(self.size),
            "Cookie": self.conn.cookie(),
        }
        self._http = _http_connection(self.conn.endpoint)
        try:
            with translated(self.conn.endpoint):
                self._http.putrequest("PUT", self._target, skip_accept_encoding=True)
                for header, value in headers.items():
                    self._http.putheader(header, value)
            self._send(self._http.endheaders)
        except BaseException:
            self._http.close()
            raise
        return self

    def write(self, data: bytes | memoryview) -> int:
        """Send the next bytes of the body; returns how many (all of them)."""
        assert self._http is not None, "write() inside the with block"
        if self.sent + len(data) > self.size:
            raise ValueError(f"{self.name}: more than the announced {self.size} bytes")
        http_conn = self._http
        self._send(lambda: http_conn.send(data))
        self.sent += len(data)
        return len(data)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        assert self._http is not None
        try:
            if exc_type is not None:
                return
            if self.sent != self.size:
                raise ValueError(f"{self.name}: the body ended after {self.sent} of {self.size} bytes")
            with translated(self.conn.endpoint):
                resp = self._http.getresponse()
                resp.read(64 * 1024)
            if not 200 <= resp.status < 300:
                raise datastore_failure(self.conn.endpoint.where, resp.status, self.name, writing=True)
        finally:
            self._http.close()

    def _send(self, send: Callable[[], None]) -> None:
        assert self._http is not None
        with translated(self.conn.endpoint):
            try:
                send()
            except OSError as exc:
                # vCenter may have refused the request (404, 401, ...) and closed the connection before
                # the body was all sent: its answer says more than the broken pipe does.
                status = _early_status(self._http)
                if status is None:
                    raise Unreachable(
                        f"{self.conn.endpoint.where}: the connection broke while writing {self.name} after "
                        f"{self.sent} of {self.size} bytes ({os_message(exc)})"
                    ) from None
                raise datastore_failure(self.conn.endpoint.where, status, self.name, writing=True) from None


def _http_connection(endpoint: Endpoint) -> http.client.HTTPConnection:
    """A connected http.client connection to vCenter, TLS checked as the SOAP connection is."""
    http_conn: http.client.HTTPConnection
    if endpoint.protocol == "https":
        http_conn = http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=endpoint.timeout, context=endpoint.ssl_context()
        )
    else:
        http_conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=endpoint.timeout)
    with translated(endpoint):
        http_conn.connect()
    assert http_conn.sock is not None
    http_conn.sock.settimeout(READ_TIMEOUT)  # connect and handshake had endpoint.timeout
    return http_conn


class ByteSource(Protocol):
    """What DatastoreFile.write reads from: a file or pipe opened "rb", io.BytesIO, a vault DiskReader."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _read_some(source: ByteSource, view: memoryview) -> int:
    """Read into view what source has (at least one byte unless it ended); returns how many."""
    return source.readinto(view) or 0


def _early_status(http_conn: http.client.HTTPConnection) -> int | None:
    """The status of an answer the server sent before the request was complete, if it can be read."""
    try:
        resp = http_conn.getresponse()
        resp.read(64 * 1024)
        return resp.status
    except (OSError, http.client.HTTPException):
        return None


def datastore_failure(where: str, status: int, name: str, *, writing: bool) -> VCenterError:
    """The exception for an HTTP error status of /folder, reading or writing the file name ("[ds1] a/b.vmdk").

    404: NotFound; 403: the vCenter user lacks the datastore permission; anything else as for every raw
    request (errors.http_failure: 401, the session ended; 502-504, Unreachable).
    """
    verb = "write" if writing else "read"
    if status == 404 and writing:
        return NotFound(f"{name} cannot be written (HTTP 404): no such datacenter, datastore or directory")
    if status == 404:
        return NotFound(f"{name} does not exist (HTTP 404)")
    if status == 403:
        return VCenterError(
            f"{where}: {verb}ing {name} was refused (HTTP 403): the vCenter user may not {verb} datastore files"
        )
    return http_failure(where, status, f"{verb}ing {name}")
