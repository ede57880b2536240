"""vCenter connections from the page and the command line: each kind of failure gets its own clear
message and changes nothing; the password is encrypted, never rendered, never in job arguments."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import AuditEntry
from inventory.models import VCenter
from jobs.models import JobRun
from tools.services import free_port

pytestmark = pytest.mark.django_db
WRONG_PIN = ":".join(["AB"] * 32)


@pytest.fixture
def tls_sim(vcsim_factory):
    return vcsim_factory(tls=True)


def form_data(sim, **overrides) -> dict:
    data = {
        "name": "Lab vCenter",
        "host": sim.host,
        "port": sim.port,
        "username": sim.username,
        "password": sim.password,
        "thumbprint": sim.thumbprint,
        "verify_tls": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def post_add(client, data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return client.post(reverse("inventory:vcenter_add"), data)


def test_adding_a_vcenter_with_a_pinned_thumbprint_saves_it_encrypted_and_queues_a_sync(
    as_admin, tls_sim, django_capture_on_commit_callbacks
):
    response = post_add(as_admin, form_data(tls_sim), django_capture_on_commit_callbacks)
    assert response.status_code == 302, response.context["form"].errors
    vc = VCenter.objects.get()
    assert vc.thumbprint == tls_sim.thumbprint and vc.verify_tls and vc.instance_uuid
    assert tls_sim.password not in vc.password_encrypted and vc.password == tls_sim.password
    run = JobRun.objects.get(kind="inventory.sync")
    assert run.params == {"vcenter_id": vc.pk}
    entry = AuditEntry.objects.get(action="vcenter.create")
    assert tls_sim.password not in str(entry.details)


def test_the_edit_page_never_renders_the_password(as_admin, tls_sim, django_capture_on_commit_callbacks):
    post_add(as_admin, form_data(tls_sim), django_capture_on_commit_callbacks)
    vc = VCenter.objects.get()
    for url in (reverse("inventory:vcenter_edit", args=[vc.pk]), reverse("inventory:vcenters")):
        body = as_admin.get(url).content.decode()
        assert tls_sim.password not in body and vc.password_encrypted not in body


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password": "wrong-password"}, "password", "rejected the user name or password"),
        ({"thumbprint": WRONG_PIN}, "thumbprint", "does not match the pinned thumbprint"),
        ({"thumbprint": ""}, None, "not trusted"),
        ({"port": "closed"}, "host", "cannot be reached"),
    ],
)
def test_each_connection_problem_gets_its_own_message_and_saves_nothing(
    as_admin, tls_sim, django_capture_on_commit_callbacks, overrides, field, message
):
    if overrides.get("port") == "closed":
        overrides = {"port": free_port()}
    response = post_add(as_admin, form_data(tls_sim, **overrides), django_capture_on_commit_callbacks)
    assert response.status_code == 200
    errors = response.context["form"].errors.get(field or "__all__")
    assert errors and message in " ".join(errors), response.context["form"].errors
    # Only vCenter changes count: the test login and its user's roles are audited too.
    assert not VCenter.objects.exists() and not JobRun.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="vcenter.").exists()


def test_an_untrusted_certificate_shows_its_thumbprint_and_can_be_pinned(
    as_admin, tls_sim, django_capture_on_commit_callbacks
):
    response = post_add(as_admin, form_data(tls_sim, thumbprint=""), django_capture_on_commit_callbacks)
    assert tls_sim.thumbprint in response.content.decode()
    pinned = form_data(tls_sim, thumbprint="", pin_thumbprint=tls_sim.thumbprint)
    response = post_add(as_admin, pinned, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert VCenter.objects.get().thumbprint == tls_sim.thumbprint


def test_skipping_verification_is_possible_but_shown_as_a_warning(
    as_admin, tls_sim, django_capture_on_commit_callbacks
):
    data = form_data(tls_sim, thumbprint="", verify_tls=None)
    assert post_add(as_admin, data, django_capture_on_commit_callbacks).status_code == 302
    assert "not verified" in as_admin.get(reverse("inventory:vcenters")).content.decode()


def test_test_connection_reports_the_server(as_admin, tls_sim, django_capture_on_commit_callbacks):
    post_add(as_admin, form_data(tls_sim), django_capture_on_commit_callbacks)
    vc = VCenter.objects.get()
    body = as_admin.post(reverse("inventory:vcenter_test", args=[vc.pk]), headers={"HX-Request": "true"}).content
    assert b"\xe2\x9c\x94" in body  # ✔
    tls_sim.stop()
    body = as_admin.post(reverse("inventory:vcenter_test", args=[vc.pk]), headers={"HX-Request": "true"})
    assert "cannot be reached" in body.content.decode()


def test_only_administrators_manage_connections(as_helpdesk, as_auditor, tls_sim):
    vc = VCenter(name="x", host="h", username="u")
    vc.password = "p"
    vc.save()
    for client in (as_helpdesk, as_auditor):
        assert client.get(reverse("inventory:vcenter_add")).status_code == 403
        assert client.post(reverse("inventory:vcenter_test", args=[vc.pk])).status_code == 403
        assert client.post(reverse("inventory:vcenter_sync", args=[vc.pk])).status_code == 403
        assert client.post(reverse("inventory:vcenter_remove", args=[vc.pk]), {"confirm": "x"}).status_code == 403
    assert as_auditor.get(reverse("inventory:vcenters")).status_code == 200
    assert VCenter.objects.filter(pk=vc.pk).exists()


def cli(*args, stdin: str = "") -> str:
    out = io.StringIO()
    import sys

    old, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    finally:
        sys.stdin = old
    return out.getvalue()


def cli_add(sim, *, password: str, pin: bool = True) -> str:
    """`manage.py vcenter add lab` for the simulator, the password on stdin, its certificate pinned."""
    pinned = ["--thumbprint", sim.thumbprint] if pin else []
    args = ["--host", sim.host, "--port", str(sim.port), "--user", sim.username, "--password-stdin", *pinned]
    return cli("vcenter", "add", "lab", *args, stdin=password + "\n")


def test_the_command_line_adds_lists_tests_and_removes(tls_sim, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        out = cli_add(tls_sim, password=tls_sim.password)
    assert "Added lab" in out
    (row,) = json.loads(cli("vcenter", "list", "--json"))
    assert row["name"] == "lab" and row["security"] == "pinned"
    assert "Certificate SHA-256" in cli("vcenter", "test", "lab")
    assert "Removed lab" in cli("vcenter", "remove", "lab")
    assert not VCenter.objects.exists()


def test_the_command_line_refuses_a_wrong_password_and_an_untrusted_certificate(tls_sim):
    with pytest.raises(CommandError, match="rejected the user name or password"):
        cli_add(tls_sim, password="wrong")
    with pytest.raises(CommandError, match=f"--thumbprint {tls_sim.thumbprint}"):
        cli_add(tls_sim, password=tls_sim.password, pin=False)
    assert not VCenter.objects.exists()
