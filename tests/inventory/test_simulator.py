"""inventory.vcenter against the vCenter simulator (tests/fixtures/vcsim.py); no database."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from inventory import vcenter
from tests.factories.simulator import NON_LATIN_NAME, SCRIPT_NAME, SMALL_SPEC
from tools.simulator import Simulator

MiB = 1024 * 1024


@pytest.fixture
def conn(vcsim: Simulator) -> Iterator[vcenter.Connection]:
    with vcenter.connect(
        vcenter.Endpoint(vcsim.host, vcsim.port, protocol="http"), vcsim.username, vcsim.password
    ) as c:
        yield c


def spec_vms() -> set[tuple[str, str, str]]:
    """(datacenter, folder path, name) of every VM in SMALL_SPEC."""
    expected = set()
    for dc in SMALL_SPEC["datacenters"]:
        for folder in dc["folders"]:
            names = [vm["name"] for vm in folder.get("vms", [])]
            if gen := folder.get("generate"):
                names += [f"{gen['name_prefix']}{n:04d}" for n in range(1, gen["count"] + 1)]
            expected |= {(dc["name"], folder["path"], name) for name in names}
    return expected


def test_lists_exactly_the_spec_vms(vcsim: Simulator, conn: vcenter.Connection) -> None:
    vms = vcenter.list_vms(conn)

    assert {(vm.datacenter, vm.folder_path, vm.name) for vm in vms} == spec_vms()
    assert {SCRIPT_NAME, NON_LATIN_NAME} <= {vm.name for vm in vms}
    by_moref = {vm.moref: vm for vm in vms}
    for expected in vcsim.vms():
        vm = by_moref[expected["moref"]]
        assert vm.instance_uuid == expected["instance_uuid"]
        assert vm.power_state == expected["power_state"]
        assert [(d.key, d.capacity_bytes, d.file_name) for d in vm.disks] == [
            (d["key"], d["capacity_bytes"], d["file_name"]) for d in expected["disks"]
        ]
    web = next(vm for vm in vms if vm.name == "web-01")
    assert (web.guest_id, web.power_state, web.is_template) == ("windows9Server64Guest", "poweredOn", False)
    assert [(d.label, d.capacity_bytes, d.datastore, d.path) for d in web.disks] == [
        ("Hard disk 1", 64 * MiB, "datastore1", "web-01/web-01.vmdk"),
        ("Hard disk 2", 16 * MiB, "datastore1", "web-01/web-01_1.vmdk"),
    ]


def test_list_vms_follows_page_tokens(conn: vcenter.Connection) -> None:
    def key(vm: vcenter.VmInfo) -> str:
        return vm.moref

    assert sorted(vcenter.list_vms(conn, page_size=2), key=key) == sorted(vcenter.list_vms(conn), key=key)


def test_create_and_remove_snapshot(vcsim: Simulator, conn: vcenter.Connection) -> None:
    vm = vcsim.vm("web-01")

    snapshot = vcenter.create_snapshot(conn, vm["moref"], "backup-1", "taken by a test", quiesce=True)
    assert snapshot.startswith("snapshot-")
    vcenter.remove_snapshot(conn, snapshot)

    with pytest.raises(vcenter.VCenterError):  # it is gone
        vcenter.remove_snapshot(conn, snapshot)


@pytest.mark.parametrize("vm_name", ["web-01", SCRIPT_NAME])
def test_uploaded_image_reads_back_through_folder_api(
    vcsim: Simulator, conn: vcenter.Connection, tmp_path: Path, vm_name: str
) -> None:
    vm = vcsim.vm(vm_name)
    disk_index = len(vm["disks"]) - 1
    disk = vm["disks"][disk_index]
    image = random.Random(42).randbytes(3 * MiB + 512)  # smaller than the disk: padded with zeros
    (tmp_path / "disk.img").write_bytes(image)

    vcsim.upload_disk_image(vm_name, disk_index, tmp_path / "disk.img")

    def read(path: str, offset: int, length: int) -> bytes:
        return vcenter.read_datastore_file(conn, vm["datacenter"], disk["datastore"], path, offset, length)

    assert read(disk["flat_path"], MiB + 123, 4096) == image[MiB + 123 : MiB + 123 + 4096]
    assert read(disk["flat_path"], len(image) - 10, 20) == image[-10:] + bytes(10)
    assert read(disk["flat_path"], disk["capacity_bytes"] - 5, 100) == bytes(5)  # short read at the end
    assert vcsim.disk_file(vm_name, disk_index).stat().st_size == disk["capacity_bytes"]
    descriptor = read(disk["descriptor_path"], 0, 4096).decode()
    flat_name = disk["flat_path"].rsplit("/", 1)[1]
    assert f'RW {disk["capacity_bytes"] // 512} VMFS "{flat_name}"' in descriptor
    assert 'createType="vmfs"' in descriptor


def test_upload_refuses_an_image_larger_than_the_disk(vcsim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "big.img").write_bytes(bytes(8 * MiB + 1))
    with pytest.raises(ValueError, match="larger than"):
        vcsim.upload_disk_image(SCRIPT_NAME, 0, tmp_path / "big.img")


def test_wrong_password_is_bad_credentials(vcsim: Simulator) -> None:
    with pytest.raises(vcenter.BadCredentials):
        vcenter.connect(vcenter.Endpoint(vcsim.host, vcsim.port, protocol="http"), vcsim.username, "wrong")
    with pytest.raises(vcenter.BadCredentials):
        vcenter.connect(vcenter.Endpoint(vcsim.host, vcsim.port, protocol="http"), "someone", vcsim.password)


def test_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed, and nothing listens on it
    with pytest.raises(vcenter.Unreachable):
        vcenter.connect(vcenter.Endpoint("127.0.0.1", port, protocol="http"), "user", "pass")


def test_a_plain_web_server_is_not_a_vcenter() -> None:
    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(vcenter.NotAVCenter):
            vcenter.connect(vcenter.Endpoint("127.0.0.1", server.server_port, protocol="http"), "user", "pass")
    finally:
        server.shutdown()
        server.server_close()
