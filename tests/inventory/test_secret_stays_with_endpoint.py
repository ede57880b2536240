"""A vCenter's stored password is only ever sent to the endpoint it was saved for: an edit that changes
the host, port, protocol or certificate trust must carry the password again, from the page and from
actions alike, and is refused before anything connects (a listening socket shows nobody called)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from inventory import actions
from inventory.connection import ConnectionParams
from inventory.models import VCenter

pytestmark = pytest.mark.django_db


@pytest.fixture
def trap() -> Iterator[socket.socket]:
    """A port on this machine that listens and records whether anyone connected."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nobody_called(trap: socket.socket) -> bool:
    try:
        conn, _ = trap.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.fixture
def saved(tls_sim) -> VCenter:
    vc = VCenter(name="Lab", host=tls_sim.host, port=tls_sim.port, username=tls_sim.username)
    vc.thumbprint, vc.password = tls_sim.thumbprint, tls_sim.password
    vc.save()
    return vc


@pytest.fixture
def tls_sim(vcsim_factory):
    return vcsim_factory(tls=True)


def edited(vc: VCenter, **changes) -> ConnectionParams:
    return ConnectionParams(
        **{
            "name": vc.name,
            "host": vc.host,
            "port": vc.port,
            "username": vc.username,
            "password": "",
            "protocol": vc.protocol,
            "verify_tls": vc.verify_tls,
            "thumbprint": vc.thumbprint,
            **changes,
        }
    )


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"host": "127.0.0.1"}, "host"),
        ({"protocol": "http", "verify_tls": False, "thumbprint": ""}, "protocol"),
        ({"verify_tls": False, "thumbprint": ""}, "certificate verification"),
        ({"thumbprint": ":".join(["AB"] * 32)}, "pinned thumbprint"),
    ],
)
def test_it_refuses_an_edit_that_moves_the_stored_password_without_connecting(saved, trap, changes, what):
    changes = {"port": trap.getsockname()[1], **changes} if "host" in changes else changes
    if "host" in changes:
        saved.host = "vc.example.invalid"  # so 127.0.0.1 is a change
        saved.save()

    with pytest.raises(actions.PasswordRequired, match=f"Changing the .*{what}.* requires re-entering the password"):
        actions.update_vcenter(None, saved, edited(saved, **changes))

    assert nobody_called(trap)
    assert not AuditEntry.objects.filter(action="vcenter.update").exists()


def test_a_new_port_on_the_page_asks_for_the_password_and_changes_nothing(as_admin, saved, trap):
    before = (saved.host, saved.port, saved.password)
    port = trap.getsockname()[1]
    data = {"name": saved.name, "host": saved.host, "port": port, "username": saved.username, "password": ""}
    data |= {"thumbprint": saved.thumbprint, "verify_tls": "on"}

    response = as_admin.post(reverse("inventory:vcenter_edit", args=[saved.pk]), data)

    assert response.status_code == 200
    errors = response.context["form"].errors["password"]
    assert errors == [
        "Changing the port requires re-entering the password: the stored one is only ever sent to the "
        "endpoint it was saved for."
    ]
    assert nobody_called(trap)
    saved.refresh_from_db()
    assert (saved.host, saved.port, saved.password) == before
    assert not AuditEntry.objects.filter(action="vcenter.update").exists()


def test_an_edit_that_keeps_the_endpoint_uses_the_stored_password(saved, tls_sim):
    vc = actions.update_vcenter(None, saved, edited(saved, name="Lab renamed", host=tls_sim.host.upper()))

    assert vc.name == "Lab renamed" and vc.password == tls_sim.password
    entry = AuditEntry.objects.get(action="vcenter.update")
    assert "password" not in entry.details and tls_sim.password not in str(entry.details)


def test_a_new_endpoint_with_the_password_typed_again_is_tested_and_saved(saved, tls_sim):
    saved.host, saved.port = "vc.example.invalid", 1
    saved.save()

    vc = actions.update_vcenter(
        None, saved, edited(saved, host=tls_sim.host, port=tls_sim.port, password=tls_sim.password)
    )

    assert (vc.host, vc.port) == (tls_sim.host, tls_sim.port)
    assert AuditEntry.objects.get(action="vcenter.update").details["password"] == "changed"


def test_over_plain_http_a_leftover_certificate_setting_is_no_change(trap):
    vc = VCenter(name="Sim", host="127.0.0.1", port=trap.getsockname()[1], username="u", protocol="http")
    vc.verify_tls, vc.password = True, "stored"
    vc.save()

    assert actions.password_for(vc, edited(vc, name="Sim 2", verify_tls=False)) == "stored"
    with pytest.raises(actions.PasswordRequired, match="Changing the protocol requires"):
        actions.password_for(vc, edited(vc, protocol="https"))
    assert nobody_called(trap)
