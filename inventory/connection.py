"""Open a pyVmomi-free `vcenter.Connection`: from the parameters a person typed (to test them), or
from a saved VCenter row (its password is decrypted when the parameters are read from it)."""

from __future__ import annotations

from dataclasses import dataclass

from inventory import vcenter as vsphere
from inventory.models import VCenter

# What a connection saves besides its password (which is encrypted and never shown).
SAVED_FIELDS = ("name", "host", "port", "protocol", "username", "verify_tls", "thumbprint")


@dataclass(frozen=True)
class ConnectionParams:
    name: str
    host: str
    port: int
    username: str
    password: str
    protocol: str = VCenter.Protocol.HTTPS
    verify_tls: bool = True
    thumbprint: str = ""

    @classmethod
    def of(cls, vc: VCenter) -> ConnectionParams:
        """The saved connection's parameters, with its decrypted password."""
        return cls(
            name=vc.name,
            host=vc.host,
            port=vc.port,
            username=vc.username,
            password=vc.password,
            protocol=vc.protocol,
            verify_tls=vc.verify_tls,
            thumbprint=vc.thumbprint,
        )


def connect(params: ConnectionParams, *, timeout: float = 10.0) -> vsphere.Connection:
    endpoint = vsphere.Endpoint(
        params.host,
        params.port,
        protocol=params.protocol,
        verify_tls=params.verify_tls,
        thumbprint=params.thumbprint or None,
        timeout=timeout,
    )
    return vsphere.connect(endpoint, params.username, params.password)


def open_connection(vc: VCenter, *, timeout: float = 10.0) -> vsphere.Connection:
    return connect(ConnectionParams.of(vc), timeout=timeout)
