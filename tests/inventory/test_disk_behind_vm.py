"""A real NTFS disk image put behind a simulated VM's disk reads back, file by file, through the
datastore HTTP API with Range requests: the path file-level restore will take."""

from __future__ import annotations

import io

from dissect.ntfs import NTFS
from dissect.volume.disk import Disk

from inventory import vcenter
from tests.factories.simulator import one_datacenter
from tools import diskimages
from tools.simulator import Simulator

SPEC = one_datacenter(
    {"Windows": [{"name": "file-server", "disks_mb": [48], "instance_uuid": "502e71fa-1b2c-4d3e-8f90-aabbccddeeff"}]}
)


class DatastoreFile(io.RawIOBase):
    """A read-only, seekable view of a datastore file, each read one HTTP Range request."""

    def __init__(self, conn: vcenter.Connection, datacenter: str, datastore: str, path: str, size: int) -> None:
        self.conn, self.datacenter, self.datastore, self.path, self.size = conn, datacenter, datastore, path, size
        self.pos = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        length = min(len(buffer), self.size - self.pos)
        if length <= 0:
            return 0
        data = vcenter.read_datastore_file(self.conn, self.datacenter, self.datastore, self.path, self.pos, length)
        self.requests += 1
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def test_a_file_in_a_nested_ntfs_folder_reads_back_through_range_requests(vcsim_factory) -> None:
    sim: Simulator = vcsim_factory(SPEC)
    tree = diskimages.sample_windows_tree()
    sim.upload_disk_image("file-server", 0, diskimages.build_ntfs_disk(tree, size_mib=48))
    manifest_vm = sim.vm("file-server")
    disk = manifest_vm["disks"][0]
    assert manifest_vm["instance_uuid"] == "502e71fa-1b2c-4d3e-8f90-aabbccddeeff"

    with vcenter.connect(vcenter.Endpoint(sim.host, sim.port, protocol="http"), sim.username, sim.password) as conn:
        flat = DatastoreFile(conn, "DC", disk["datastore"], disk["flat_path"], disk["capacity_bytes"])
        reader = io.BufferedReader(flat, buffer_size=64 * 1024)
        (partition,) = Disk(reader).partitions
        fs = NTFS(partition.open())
        folder = "Users/alice/Documents/Überweisungen"
        name = next(iter(fs.mft.get(folder).listdir()))
        content = fs.mft.get(f"{folder}/{name}").open().read()

    assert content == tree["Users"]["alice"]["Documents"]["Überweisungen"][name].encode()
    # Only the metadata and the file were fetched, not the whole 48 MiB disk.
    assert flat.requests < 200
