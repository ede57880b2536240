"""Open a pyVmomi-free `vcenter.Connection` from a saved VCenter row (the password is decrypted here only)."""

from __future__ import annotations

from inventory import vcenter as vsphere
from inventory.models import VCenter


def open_connection(vc: VCenter, *, timeout: float = 10.0) -> vsphere.Connection:
    return vsphere.connect(
        vc.host,
        vc.port,
        vc.username,
        vc.password,
        protocol=vc.protocol,
        verify_tls=vc.verify_tls,
        thumbprint=vc.thumbprint or None,
        timeout=timeout,
    )
