"""Connection security of inventory.vcenter against the simulator over HTTPS (self-signed
certificate); no database."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inventory import vcenter
from tests.factories.simulator import SMALL_SPEC
from tests.fixtures.vcsim import connect_to
from tools.simulator import Simulator

PASSWORD = "Kor3ct-h0rse!battery"  # distinctive, so a message quoting it would be caught


@pytest.fixture
def sim(vcsim_factory) -> Simulator:
    return vcsim_factory(SMALL_SPEC, tls=True, password=PASSWORD)


def test_identity_shows_the_thumbprint_of_a_self_signed_certificate(sim: Simulator) -> None:
    identity = vcenter.fetch_server_identity(sim.host, sim.port)

    assert identity.thumbprint_sha256 == sim.thumbprint
    assert len(identity.thumbprint_sha256) == 32 * 3 - 1 and identity.thumbprint_sha256.isupper()
    assert not identity.trusted and "self-signed" in (identity.trust_problem or "")
    assert "CN=localhost" in identity.subject and identity.issuer == identity.subject
    assert identity.not_after > datetime.now(UTC)


@pytest.mark.parametrize("form", [str.upper, str.lower, lambda t: t.replace(":", "")])
def test_the_right_pin_connects_in_any_spelling(sim: Simulator, form) -> None:
    with connect_to(sim, thumbprint=form(sim.thumbprint)) as conn:
        assert vcenter.about(conn).api_type == "VirtualCenter"
        assert len(vcenter.fetch_inventory(conn).vms) == 7


def test_a_wrong_pin_is_a_mismatch(sim: Simulator) -> None:
    wrong = "AB:" * 31 + "CD"
    with pytest.raises(vcenter.ThumbprintMismatch) as caught:
        connect_to(sim, thumbprint=wrong)

    assert (caught.value.expected, caught.value.actual) == (wrong, sim.thumbprint)
    assert sim.thumbprint in str(caught.value) and PASSWORD not in str(caught.value)
    assert not caught.value.retryable


def test_verification_without_pin_refuses_and_names_the_thumbprint(sim: Simulator) -> None:
    with pytest.raises(vcenter.CertificateNotTrusted) as caught:
        connect_to(sim, thumbprint=None, verify_tls=True)

    assert caught.value.thumbprint == sim.thumbprint
    assert "self-signed" in caught.value.reason
    assert sim.thumbprint in str(caught.value) and PASSWORD not in str(caught.value)


def test_no_verification_connects(sim: Simulator) -> None:
    with connect_to(sim, thumbprint=None, verify_tls=False) as conn:
        assert vcenter.about(conn).instance_uuid


def test_a_certificate_the_system_trusts_verifies_with_ca_and_host_name(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL reads its default CA file from SSL_CERT_FILE: trust the simulator's self-signed certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(sim.cert_file))

    assert vcenter.fetch_server_identity(sim.host, sim.port).trusted
    assert vcenter.fetch_server_identity("localhost", sim.port).trusted  # in the certificate's names
    with connect_to(sim, thumbprint=None, verify_tls=True) as conn:
        assert vcenter.about(conn).api_type == "VirtualCenter"


def test_datastore_reads_over_https_check_the_pin_too(sim: Simulator, tmp_path: Path) -> None:
    image = random.Random(7).randbytes(1024 * 1024)
    (tmp_path / "disk.img").write_bytes(image)
    sim.upload_disk_image("web-01", 1, tmp_path / "disk.img")
    disk = sim.vm("web-01")["disks"][1]

    with connect_to(sim) as conn:
        assert (
            vcenter.read_datastore_file(conn, "DC-East", "datastore1", disk["flat_path"], 4096, 100) == image[4096:4196]
        )
        # The vCenter comes back with another certificate (or another server takes its address):
        # every new TLS connection of the session is checked against the pin, SOAP and datastore alike.
        sim.cert_file.unlink()
        (sim.workdir / "tls-key.pem").unlink()
        old = sim.thumbprint
        sim.restart()
        assert sim.thumbprint != old
        with pytest.raises(vcenter.ThumbprintMismatch):
            vcenter.read_datastore_file(conn, "DC-East", "datastore1", disk["flat_path"], 0, 100)
        with pytest.raises(vcenter.ThumbprintMismatch):
            vcenter.fetch_inventory(conn)
        with pytest.raises(vcenter.ThumbprintMismatch):
            vcenter.fetch_folders(conn)


def test_plain_http_against_https_and_back_is_not_a_vcenter(sim: Simulator, vcsim: Simulator) -> None:
    with pytest.raises(vcenter.NotAVCenter):
        vcenter.connect(vcenter.Endpoint(sim.host, sim.port, protocol="http"), sim.username, PASSWORD)
    with pytest.raises(vcenter.NotAVCenter):
        vcenter.connect(vcenter.Endpoint(vcsim.host, vcsim.port, verify_tls=False), vcsim.username, vcsim.password)
    with pytest.raises(vcenter.NotAVCenter):
        vcenter.fetch_server_identity(vcsim.host, vcsim.port)


def test_errors_are_one_line_without_the_password(sim: Simulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    failures = []
    for call in (
        lambda: connect_to(sim, password="wrong-" + PASSWORD),
        lambda: vcenter.connect(vcenter.Endpoint("127.0.0.1", closed_port), "user", PASSWORD),
        lambda: vcenter.connect(vcenter.Endpoint("no-such-host.invalid", 443, timeout=3), "user", PASSWORD),
    ):
        with pytest.raises(vcenter.VCenterError) as caught:
            call()
        failures.append(caught.value)

    assert [type(e) for e in failures] == [vcenter.BadCredentials, vcenter.Unreachable, vcenter.Unreachable]
    assert [e.retryable for e in failures] == [False, True, True]
    for failure in failures:
        assert PASSWORD not in str(failure) and "\n" not in str(failure) and str(failure)


def test_thumbprints_are_sha256_only() -> None:
    assert vcenter.normalize_thumbprint("ab" * 32) == ":".join(["AB"] * 32)
    with pytest.raises(ValueError, match="SHA-256"):
        vcenter.normalize_thumbprint("AB:" * 19 + "CD")  # a SHA-1 thumbprint, as old tools show
