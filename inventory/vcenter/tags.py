"""vSphere tags through vCenter's REST API (/rest/com/vmware/cis): tag_vm() attaches a tag to a VM,
creating its category and the tag when missing; vms_with_tag() lists the VMs that carry one.

Tags are not in the SOAP API (vim25): they live in vCenter's vAPI service, reached over HTTPS on the
same port. Requests go through the connection's urllib3 pool, so TLS is checked exactly as for SOAP
(pinned thumbprint, or CA and host name). That API does not accept the SOAP session's cookie (neither
vCenter nor the simulator: HTTP 401), so each call signs in with the connection's credentials (POST
/rest/com/vmware/cis/session, basic authentication), uses the session id it returns as the
vmware-api-session-id header, and signs out at the end (vCenter limits sessions per user).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3

from .connection import READ_TIMEOUT, Connection, translated
from .errors import CREDENTIALS_REJECTED, BadCredentials, NotFound, VCenterError, http_failure

API = "/rest/com/vmware/cis"
SESSION_HEADER = "vmware-api-session-id"
ALREADY_EXISTS = "com.vmware.vapi.std.errors.already_exists"


class _Refused(Exception):
    """A 400 answer of the tagging API, with vAPI's error type (handled inside this module)."""

    def __init__(self, kind: str, doing: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.doing = doing


@dataclass
class _Rest:
    """One signed-in REST session on conn."""

    conn: Connection
    session: str = ""

    def call(self, method: str, path: str, doing: str, body: dict[str, Any] | None = None) -> Any:
        """The "value" of the answer to method path; doing completes an error sentence ("creating
        tag category 'VM Backup'"). A 400 raises _Refused (the caller knows what it means)."""
        endpoint = self.conn.endpoint
        headers = {"Accept": "application/json"}
        if self.session:
            headers[SESSION_HEADER] = self.session
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        timeout = urllib3.Timeout(connect=endpoint.timeout, read=READ_TIMEOUT)
        with translated(endpoint):
            resp = self.conn.pool.request(
                method, self.conn.base_url + API + path, body=data, headers=headers, retries=False, timeout=timeout
            )
        if resp.status == 400:
            raise _Refused(_error_type(resp.data), doing)
        if resp.status == 403:
            raise VCenterError(f"{endpoint.where}: the vCenter user may not tag VMs ({doing}: HTTP 403)")
        if resp.status == 404:
            raise NotFound(f"{endpoint.where}: not found while {doing} (HTTP 404)")
        if resp.status >= 300:
            raise http_failure(endpoint.where, resp.status, doing)
        if not resp.data.strip():
            return None
        try:
            return json.loads(resp.data).get("value")
        except (ValueError, AttributeError):
            raise VCenterError(f"{endpoint.where}: the REST API answered no JSON ({doing})") from None


def _error_type(data: bytes) -> str:
    with suppress(ValueError, AttributeError):
        return str(json.loads(data).get("type") or "HTTP 400")
    return "HTTP 400"


@contextmanager
def _refusals(conn: Connection) -> Iterator[None]:
    """A 400 answer as a VCenterError naming what was refused."""
    try:
        yield
    except _Refused as exc:
        raise VCenterError(f"{conn.endpoint.where}: vCenter refused {exc.doing} ({exc.kind})") from None


@contextmanager
def _signed_in(conn: Connection) -> Iterator[_Rest]:
    if conn.credentials is None:
        raise VCenterError(f"{conn.endpoint.where}: this connection has no credentials for the REST API")
    username, password = conn.credentials
    rest = _Rest(conn)
    auth = urllib3.make_headers(basic_auth=f"{username}:{password}")
    timeout = urllib3.Timeout(connect=conn.endpoint.timeout, read=READ_TIMEOUT)
    with translated(conn.endpoint):
        resp = conn.pool.request("POST", conn.base_url + API + "/session", headers=auth, retries=False, timeout=timeout)
    if resp.status == 401:
        raise BadCredentials(f"{conn.endpoint.where}: {CREDENTIALS_REJECTED} (REST API sign-in)")
    if resp.status == 404:
        raise VCenterError(f"{conn.endpoint.where} has no vSphere REST API (/rest), so no tags")
    if resp.status != 200:
        raise http_failure(conn.endpoint.where, resp.status, "signing in to the REST API")
    try:
        rest.session = str(json.loads(resp.data)["value"])
    except (ValueError, KeyError, TypeError):
        raise VCenterError(f"{conn.endpoint.where}: the REST API sign-in answered no session id") from None
    try:
        yield rest
    finally:
        with suppress(VCenterError, _Refused):  # a session not signed out expires on its own
            rest.call("DELETE", "/session", "signing out of the REST API")


def _category_id(rest: _Rest, name: str) -> str | None:
    for cid in rest.call("GET", "/tagging/category", "listing tag categories") or []:
        info = rest.call("GET", f"/tagging/category/id:{quote(cid)}", f"reading tag category {cid}")
        if info and info.get("name") == name:
            return str(cid)
    return None


def _tag_id(rest: _Rest, category_id: str, name: str) -> str | None:
    doing = "listing the tags of a category"
    path = f"/tagging/tag/id:{quote(category_id)}?~action=list-tags-for-category"
    for tid in rest.call("POST", path, doing) or []:
        info = rest.call("GET", f"/tagging/tag/id:{quote(tid)}", f"reading tag {tid}")
        if info and info.get("name") == name:
            return str(tid)
    return None


def _ensure_category(rest: _Rest, name: str) -> str:
    found = _category_id(rest, name)
    if found:
        return found
    doing = f"creating tag category {name!r}"
    spec = {"name": name, "description": "", "cardinality": "MULTIPLE", "associable_types": ["VirtualMachine"]}
    try:
        return str(rest.call("POST", "/tagging/category", doing, {"create_spec": spec}))
    except _Refused as exc:
        if exc.kind == ALREADY_EXISTS and (found := _category_id(rest, name)):  # made meanwhile by another job
            return found
        raise


def _ensure_tag(rest: _Rest, category_id: str, category: str, name: str) -> str:
    found = _tag_id(rest, category_id, name)
    if found:
        return found
    doing = f"creating tag {category}/{name}"
    spec = {"name": name, "description": "", "category_id": category_id}
    try:
        return str(rest.call("POST", "/tagging/tag", doing, {"create_spec": spec}))
    except _Refused as exc:
        if exc.kind == ALREADY_EXISTS and (found := _tag_id(rest, category_id, name)):
            return found
        raise


def tag_vm(conn: Connection, vm_moref: str, category: str, tag: str) -> None:
    """Attach the tag category/tag to the VM vm_moref ("vm-42"), creating the category (cardinality
    multiple, for VMs) and the tag when vCenter has none of that name. Attaching a tag the VM has
    already changes nothing. Raises a VCenterError (BadCredentials, NotFound, Unreachable, ...) with
    one sentence."""
    with _signed_in(conn) as rest, _refusals(conn):
        category_id = _ensure_category(rest, category)
        tag_id = _ensure_tag(rest, category_id, category, tag)
        doing = f"attaching tag {category}/{tag} to {vm_moref}"
        body = {"object_id": {"id": vm_moref, "type": "VirtualMachine"}}
        rest.call("POST", f"/tagging/tag-association/id:{quote(tag_id)}?~action=attach", doing, body)


def vms_with_tag(conn: Connection, category: str, tag: str) -> list[str]:
    """The morefs of the VMs that carry the tag category/tag, sorted; [] when there is no such tag."""
    with _signed_in(conn) as rest, _refusals(conn):
        category_id = _category_id(rest, category)
        tag_id = _tag_id(rest, category_id, tag) if category_id else None
        if tag_id is None:
            return []
        doing = f"listing the objects tagged {category}/{tag}"
        path = f"/tagging/tag-association/id:{quote(tag_id)}?~action=list-attached-objects"
        # An empty body: vCenter needs none, the simulator wants a JSON object.
        objects = rest.call("POST", path, doing, {}) or []
    return sorted(str(o["id"]) for o in objects if o.get("type") == "VirtualMachine")
