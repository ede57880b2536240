"""Changes to vCenter connections and the inventory, each audited in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import Count, ProtectedError
from django.template.defaultfilters import pluralize

from audit.actions import record
from inventory import vcenter as vsphere
from inventory.connection import SAVED_FIELDS, ConnectionParams, connect
from inventory.models import VCenter, VirtualMachine
from jobs import runner
from jobs.models import JobRun

SYNC_KIND = "inventory.sync"


@dataclass(frozen=True)
class ConnectionReport:
    about: vsphere.AboutInfo
    thumbprint: str  # the server's certificate, "" over plain HTTP


def normalise_thumbprint(value: str) -> str:
    """ "aa:bb…", "AABB…" or "aa bb…" → "AA:BB:…" (64 hex digits for SHA-256)."""
    digits = "".join(ch for ch in value if ch not in ": ").upper()
    if not digits:
        return ""
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise ValueError("A SHA-256 thumbprint has 64 hexadecimal digits, optionally separated by colons.")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def test_connection(params: ConnectionParams, *, timeout: float = 10.0) -> ConnectionReport:
    """Log in once and read the server's identity. Raises vcenter.VCenterError with a clear message."""
    thumbprint = ""
    if params.protocol == VCenter.Protocol.HTTPS:
        thumbprint = vsphere.fetch_server_identity(
            params.host, params.port, timeout=min(timeout, 5.0)
        ).thumbprint_sha256
    with connect(params, timeout=timeout) as conn:
        return ConnectionReport(about=vsphere.about(conn), thumbprint=thumbprint)


def add_vcenter(user: Any, params: ConnectionParams) -> VCenter:
    """Test, then save a new connection. A connection that does not work is not saved."""
    report = test_connection(params)
    with transaction.atomic():
        vc = VCenter(**_public(params), instance_uuid=report.about.instance_uuid, version=report.about.full_name)
        vc.password = params.password
        vc.save()
        record(user, "vcenter.create", target=vc, details=_public(params))
        enqueue_sync(vc, user)
    return vc


# Where a stored password goes: a change to any of these sends it elsewhere, so it must be typed again.
ENDPOINT_FIELDS = {
    "host": "host",
    "port": "port",
    "protocol": "protocol",
    "verify_tls": "certificate verification",
    "thumbprint": "pinned thumbprint",
}


class PasswordRequired(Exception):
    """An edit would send the stored password to another endpoint than the one it was saved for; the
    message says so, and nothing was sent or changed."""


def password_for(vc: VCenter, params: ConnectionParams) -> str:
    """The password an edit of `vc` may use: the one typed, else the stored one, but only while the
    endpoint (ENDPOINT_FIELDS) stays the one it was saved for. Raises PasswordRequired otherwise,
    before anything connects: a typo or a hostile edit must never deliver the password elsewhere."""
    if params.password:
        return params.password
    changed = [label for field, label in ENDPOINT_FIELDS.items() if _endpoint(params, field) != _endpoint(vc, field)]
    if "protocol" in changed and VCenter.Protocol.HTTP in (params.protocol, vc.protocol):
        changed = ["protocol"]  # to or from plain HTTP: the certificate settings change with it
    if changed:
        what = " and ".join(filter(None, [", ".join(changed[:-1]), changed[-1]]))
        raise PasswordRequired(
            f"Changing the {what} requires re-entering the password: the stored one is only ever sent to the "
            "endpoint it was saved for."
        )
    return vc.password


def _endpoint(source: Any, field: str) -> Any:
    if field in ("verify_tls", "thumbprint") and source.protocol == VCenter.Protocol.HTTP:
        return None  # no certificate over plain HTTP: a form's leftover setting is no change
    value = getattr(source, field)
    return value.strip().lower() if field == "host" else value  # host names are case-insensitive


def update_vcenter(user: Any, vc: VCenter, params: ConnectionParams) -> VCenter:
    """Change a connection; an empty password keeps the stored one while the endpoint stays the same
    (`password_for`). Tested before saving."""
    password = password_for(vc, params)
    tested = replace(params, password=password)
    report = test_connection(tested)
    with transaction.atomic():
        before = _public_of(vc)
        for field in SAVED_FIELDS:
            setattr(vc, field, getattr(params, field))
        vc.password = password
        vc.instance_uuid, vc.version = report.about.instance_uuid, report.about.full_name
        vc.save()
        after = _public_of(vc)
        changes: dict[str, Any] = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if params.password:
            changes["password"] = "changed"  # noqa: S105 (a marker, never the secret)
        record(user, "vcenter.update", target=vc, details=changes)
    return vc


class VCenterHoldsPoints(Exception):
    """Removing the vCenter would delete VMs that recovery points belong to; the message says what to
    do, and nothing was changed."""


def remove_vcenter(user: Any, vc: VCenter) -> None:
    """Remove the connection and its inventory; refused (VCenterHoldsPoints) while its VMs have points,
    because a point without its VM could be neither listed nor restored."""
    with transaction.atomic():
        _refuse_if_points(vc)
        record(user, "vcenter.delete", target=vc, details=_public_of(vc))
        try:
            VirtualMachine.objects.filter(vcenter=vc).delete()
        except ProtectedError:
            # A backup committed a point since the check: refuse the same way (the audit row rolls back).
            _refuse_if_points(vc)
            raise
        vc.delete()


def _refuse_if_points(vc: VCenter) -> None:
    # Through the reverse relation, so inventory need not import the vault app above it.
    held = VirtualMachine.objects.filter(vcenter=vc, recovery_points__isnull=False).aggregate(
        points=Count("recovery_points"), vms=Count("pk", distinct=True)
    )
    if held["points"]:
        points, vms = held["points"], held["vms"]
        raise VCenterHoldsPoints(
            f"vCenter {vc.name} holds {points} recovery point{pluralize(points)} of {vms} VM{pluralize(vms)}; "
            "delete or let retention remove them before removing the vCenter. Nothing was changed."
        )


def enqueue_sync(vc: VCenter, user: Any = None) -> JobRun:
    """Queue a full sync unless one is already queued or running for this vCenter."""
    active = JobRun.objects.filter(
        kind=SYNC_KIND, target_id=str(vc.pk), status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING]
    ).first()
    return active or runner.enqueue(SYNC_KIND, params={"vcenter_id": vc.pk}, target=vc, user=user)


def enqueue_all_syncs() -> int:
    """The scheduled safety net behind the live watcher (config/cron.py)."""
    vcenters = list(VCenter.objects.all())
    for vc in vcenters:
        enqueue_sync(vc)
    return len(vcenters)


def _public(params: ConnectionParams) -> dict[str, Any]:
    """The parameters without the password: the fields a connection saves in the clear."""
    return {field: getattr(params, field) for field in SAVED_FIELDS}


def _public_of(vc: VCenter) -> dict[str, Any]:
    return {field: getattr(vc, field) for field in SAVED_FIELDS}
