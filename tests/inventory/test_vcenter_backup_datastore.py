"""Reading whole disks: DatastoreFile range reads and VMDK descriptors (against the simulator; no database)."""

from __future__ import annotations

import os
import socket

import pytest

from inventory import vcenter
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import connect_to, simulator_for_module
from tools.diskimages import vmdk_descriptor
from tools.simulator import Simulator

MiB = 1024 * 1024
CHUNK = vcenter.CHUNK_SIZE
SPEC = one_datacenter({"": [{"name": "disk-vm", "disks_mb": [10]}, {"name": "fresh-vm", "disks_mb": [3]}]})


sim = simulator_for_module(SPEC)


@pytest.fixture(scope="module")
def image(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """10 MiB of random bytes behind disk-vm's disk (2.5 chunks: the last read is short)."""
    data = os.urandom(10 * MiB)
    path = tmp_path_factory.mktemp("image") / "disk.raw"
    path.write_bytes(data)
    sim.upload_disk_image("disk-vm", 0, path)
    return data


def open_disk(sim: Simulator, conn: vcenter.Connection, **kwargs) -> vcenter.DatastoreFile:
    disk = sim.vm("disk-vm")["disks"][0]
    return vcenter.DatastoreFile(conn, "DC", disk["datastore"], disk["flat_path"], **kwargs)


def test_chunks_read_back_byte_identical_to_the_end(sim: Simulator, conn: vcenter.Connection, image: bytes) -> None:
    buffer = vcenter.read_buffer()
    with open_disk(sim, conn) as disk:
        assert disk.size == len(image)
        read = bytearray()
        offset = 0
        while n := disk.readinto(offset, buffer):
            read += buffer[:n]
            offset += n
        assert [len(image) - CHUNK * i for i in range(3)][-1] == 2 * MiB  # the last read was short
        assert read == image
        requests = disk.requests
        assert disk.readinto(len(image), buffer) == 0  # at the end: nothing, and no request needed
        assert disk.requests == requests


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (CHUNK - 100, 200),  # across a chunk boundary
        (CHUNK - 1, CHUNK),  # a whole chunk, misaligned
        (1, 2 * CHUNK),  # two chunks' worth in one request
        (10 * MiB - 3, 100),  # short at the end of the file
        (12345, 1),
    ],
)
def test_any_range_reads_back(sim: Simulator, conn: vcenter.Connection, image: bytes, offset: int, length: int) -> None:
    buffer = bytearray(length)  # any writable buffer works; read_buffer() is only faster
    with open_disk(sim, conn, size=len(image)) as disk:
        n = disk.readinto(offset, memoryview(buffer))
        assert n == min(length, len(image) - offset)
        assert buffer[:n] == image[offset : offset + length]
        assert disk.requests == 1  # the size was given: no HEAD


def test_past_the_end_reads_nothing_even_when_the_size_is_unknown(
    sim: Simulator, conn: vcenter.Connection, image
) -> None:
    with open_disk(sim, conn) as disk:
        assert disk.readinto(len(image) + CHUNK, bytearray(10)) == 0


def test_reads_share_one_kept_alive_connection(
    sim: Simulator, conn: vcenter.Connection, image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects = []
    original = vcenter.DatastoreFile._connect

    def counting(self: vcenter.DatastoreFile):  # type: ignore[no-untyped-def]
        connects.append(1)
        return original(self)

    monkeypatch.setattr(vcenter.DatastoreFile, "_connect", counting)
    buffer = vcenter.read_buffer(MiB)
    with open_disk(sim, conn) as disk:
        for i in range(8):
            assert disk.readinto(i * MiB, buffer) == MiB
        assert disk.size == len(image)  # a HEAD, on the same connection
        assert (disk.requests, len(connects)) == (9, 1)

        # A pooled connection that the server closed is replaced, not failed on.
        disk._idle[0].sock.shutdown(socket.SHUT_RDWR)
        assert disk.readinto(0, buffer) == MiB
        assert bytes(buffer) == image[:MiB]
        assert len(connects) == 2


def test_a_missing_file_is_not_found(conn: vcenter.Connection) -> None:
    with vcenter.DatastoreFile(conn, "DC", "ds1", "disk-vm/nope-flat.vmdk") as missing:
        with pytest.raises(vcenter.NotFound):
            missing.size  # noqa: B018 - reading it is the test
        with pytest.raises(vcenter.NotFound):
            missing.readinto(0, bytearray(10))


def test_reading_after_close_is_refused(sim: Simulator, conn: vcenter.Connection, image: bytes) -> None:
    disk = open_disk(sim, conn, size=len(image))
    disk.close()
    with pytest.raises(ValueError, match="after close"):
        disk.readinto(0, bytearray(10))


def test_tls_reads_check_the_pinned_certificate(vcsim_factory, tmp_path) -> None:
    sim: Simulator = vcsim_factory(SPEC, tls=True)
    data = os.urandom(3 * MiB)
    (tmp_path / "disk.raw").write_bytes(data)
    sim.upload_disk_image("disk-vm", 0, tmp_path / "disk.raw")
    with connect_to(sim) as conn, open_disk(sim, conn, size=10 * MiB) as disk:
        buffer = vcenter.read_buffer()
        assert disk.readinto(CHUNK // 2, buffer) == CHUNK
        assert bytes(buffer[: len(data) - CHUNK // 2]) == data[CHUNK // 2 :]
    wrong = "AA:" * 31 + "AA"
    with connect_to(sim) as conn, open_disk(sim, conn, size=10 * MiB) as disk:
        conn.endpoint = vcenter.Endpoint(conn.endpoint.host, conn.endpoint.port, thumbprint=wrong, timeout=5.0)
        with pytest.raises(vcenter.ThumbprintMismatch):
            disk.readinto(0, bytearray(10))


# ---- descriptors ----


def test_the_descriptor_of_an_uploaded_disk(sim: Simulator, conn: vcenter.Connection, image: bytes) -> None:
    disk = sim.vm("disk-vm")["disks"][0]
    descriptor = vcenter.read_vmdk_descriptor(conn, "DC", "ds1", disk["descriptor_path"])
    assert (descriptor.create_type, descriptor.parent_cid, descriptor.adapter_type) == ("vmfs", "ffffffff", "lsilogic")
    assert descriptor.is_flat and not descriptor.has_parent
    assert descriptor.capacity_bytes == disk["capacity_bytes"]
    [extent] = descriptor.extents
    assert (extent.access, extent.type, extent.kind, extent.path) == ("RW", "VMFS", "flat", disk["flat_path"])


def test_a_disk_never_written_reads_as_zeros_of_its_full_size(sim: Simulator, conn: vcenter.Connection) -> None:
    disk = sim.vm("fresh-vm")["disks"][0]
    descriptor = vcenter.read_vmdk_descriptor(conn, "DC", "ds1", disk["descriptor_path"])
    assert descriptor.is_flat and descriptor.capacity_bytes == 3 * MiB
    with vcenter.DatastoreFile(conn, "DC", "ds1", descriptor.extents[0].path or "") as flat:
        assert flat.size == 3 * MiB
        buffer = vcenter.read_buffer()
        assert flat.readinto(0, buffer) == 3 * MiB
        assert bytes(buffer[: 3 * MiB]) == bytes(3 * MiB)


def test_an_empty_or_missing_descriptor_is_an_error(sim: Simulator, conn: vcenter.Connection) -> None:
    (sim.datastore_dir("DC", "ds1") / "disk-vm" / "empty.vmdk").write_bytes(b"")
    with pytest.raises(vcenter.VCenterError, match="not a VMDK descriptor"):
        vcenter.read_vmdk_descriptor(conn, "DC", "ds1", "disk-vm/empty.vmdk")
    with pytest.raises(vcenter.NotFound):
        vcenter.read_vmdk_descriptor(conn, "DC", "ds1", "disk-vm/missing.vmdk")


def test_the_descriptor_inside_a_hosted_sparse_disk(sim: Simulator, conn: vcenter.Connection) -> None:
    text = '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'
    text += 'RW 8192 SPARSE "appliance.vmdk"\nddb.adapterType = "lsilogic"\n'
    header = b"KDMV" + (1).to_bytes(4, "little") + (3).to_bytes(4, "little")
    header += (8192).to_bytes(8, "little") + (128).to_bytes(8, "little")  # capacity, grain size
    header += (1).to_bytes(8, "little") + (20).to_bytes(8, "little")  # descriptor at sector 1, 20 sectors
    body = header.ljust(512, b"\0") + text.encode().ljust(20 * 512, b"\0")
    (sim.datastore_dir("DC", "ds1") / "disk-vm" / "appliance.vmdk").write_bytes(body)

    descriptor = vcenter.read_vmdk_descriptor(conn, "DC", "ds1", "disk-vm/appliance.vmdk")

    assert descriptor.create_type == "monolithicSparse"
    assert [(e.type, e.kind, e.path) for e in descriptor.extents] == [("SPARSE", "sparse", "disk-vm/appliance.vmdk")]
    assert not descriptor.is_flat


def test_parse_a_flat_descriptor() -> None:
    descriptor = vcenter.parse_vmdk_descriptor(vmdk_descriptor("web-01-flat.vmdk", 64 * MiB), "web-01/web-01.vmdk")
    assert descriptor.path == "web-01/web-01.vmdk"
    assert (descriptor.create_type, len(descriptor.cid), descriptor.parent_file_name_hint) == ("vmfs", 8, None)
    assert [(e.access, e.sectors, e.type, e.file_name, e.offset, e.path) for e in descriptor.extents] == [
        ("RW", 131072, "VMFS", "web-01-flat.vmdk", 0, "web-01/web-01-flat.vmdk")
    ]
    assert descriptor.is_flat and descriptor.capacity_bytes == 64 * MiB


def test_parse_sparse_extents_are_reported_as_sparse() -> None:
    text = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="twoGbMaxExtentSparse"
RW 4192256 SPARSE "big-s001.vmdk"
RW 2048 SPARSE "big-s002.vmdk"
RW 1024 ZERO
ddb.adapterType = "buslogic"
"""
    descriptor = vcenter.parse_vmdk_descriptor(text, "vm/big.vmdk")
    assert [(e.type, e.kind, e.path) for e in descriptor.extents] == [
        ("SPARSE", "sparse", "vm/big-s001.vmdk"),
        ("SPARSE", "sparse", "vm/big-s002.vmdk"),
        ("ZERO", "zero", None),
    ]
    assert not descriptor.is_flat
    assert descriptor.adapter_type == "buslogic"
    assert descriptor.capacity_bytes == (4192256 + 2048 + 1024) * 512


@pytest.mark.parametrize(
    ("create_type", "extent_type"),
    [("vmfsSparse", "VMFSSPARSE"), ("seSparse", "SESPARSE"), ("vsanSparse", "VSANSPARSE")],
)
def test_parse_a_delta_disk_with_its_parent(create_type: str, extent_type: str) -> None:
    text = f"""# Disk DescriptorFile
version=3
encoding="UTF-8"
CID=9a1b2c3d
parentCID=1f2e3d4c
isNativeSnapshot="no"
createType="{create_type}"
parentFileNameHint="web-01.vmdk"
# Extent description
RW 33554432 {extent_type} "web-01-000001-{extent_type.lower()}.vmdk"

# The Disk Data Base
#DDB

ddb.longContentID = "8f0b6f1e2b4c8c3e9a1b2c3d"
"""
    descriptor = vcenter.parse_vmdk_descriptor(text, "web-01/web-01-000001.vmdk")
    assert descriptor.has_parent and not descriptor.is_flat
    assert (descriptor.cid, descriptor.parent_cid) == ("9a1b2c3d", "1f2e3d4c")
    assert (descriptor.parent_file_name_hint, descriptor.parent_path) == ("web-01.vmdk", "web-01/web-01.vmdk")
    [extent] = descriptor.extents
    assert (extent.type, extent.kind) == (extent_type, "sparse")
    assert descriptor.adapter_type is None


def test_parse_quoted_names_comments_crlf_and_absolute_paths() -> None:
    text = (
        "# Disk DescriptorFile\r\n"
        "version=1\r\n"
        "CID=0000abcd  # a comment after a value\r\n"
        "parentCID=ffffffff\r\n"
        'createType = "monolithicFlat"\r\n'
        "   # an indented comment\r\n"
        'RW 2048 FLAT "My Disk #2 (copy)-flat.vmdk" 0\r\n'
        'RDONLY 1024 FLAT "../shared/base disk-flat.vmdk" 2048\r\n'
        'RW 10 FLAT "/vmfs/volumes/5f1e-aa/other/x-flat.vmdk" 0\r\n'
        'ddb.adapterType = "pvscsi"\r\n'
        'ddb.comment = "quoted # not a comment"\r\n'
    )
    descriptor = vcenter.parse_vmdk_descriptor(text, "My VM/My Disk.vmdk")
    assert descriptor.cid == "0000abcd"
    assert descriptor.create_type == "monolithicFlat"
    assert descriptor.adapter_type == "pvscsi"
    assert [(e.access, e.file_name, e.offset, e.path) for e in descriptor.extents] == [
        ("RW", "My Disk #2 (copy)-flat.vmdk", 0, "My VM/My Disk #2 (copy)-flat.vmdk"),
        ("RDONLY", "../shared/base disk-flat.vmdk", 2048, "shared/base disk-flat.vmdk"),
        ("RW", "/vmfs/volumes/5f1e-aa/other/x-flat.vmdk", 0, None),  # absolute: not datastore-relative
    ]
    assert descriptor.is_flat


def test_an_extent_that_leaves_the_datastore_has_no_path() -> None:
    text = 'createType="vmfs"\nRW 8 VMFS "../../etc-flat.vmdk"\n'
    assert vcenter.parse_vmdk_descriptor(text, "vm/x.vmdk").extents[0].path is None


@pytest.mark.parametrize("text", ["", "\0" * 512, "hello world", 'createType="vmfs"\n', 'RW 8 VMFS "x.vmdk"\n'])
def test_text_that_is_not_a_descriptor_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a VMDK descriptor"):
        vcenter.parse_vmdk_descriptor(text)
