"""recovery.disk_copy: a point's disk written to a datastore file through the simulator's HTTP API
and read back chunk by chunk while the upload goes on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inventory import vcenter
from recovery import disk_copy
from recovery.disk_copy import DiskTarget, NotExact, write_and_check
from tests.factories.simulator import one_datacenter
from tests.fixtures.vcsim import simulator_for_module
from tests.vault import build_image
from tools.simulator import Simulator
from vault import engine
from vault.engine import CHUNK_SIZE, FileSource, Monitor, Store, TieredStore, backup_disk

MiB = 1024 * 1024
DISK_MB = 64  # 16 chunks: several read back during the upload with a 4 MiB lag
SPEC = one_datacenter({"": [{"name": f"target-{n}", "disks_mb": [DISK_MB]} for n in range(7)]})
LAYOUT = [("text", 9 * MiB), ("zero", 12 * MiB), ("random", 10 * MiB), ("text", 33 * MiB)]

sim = simulator_for_module(SPEC, tls=True)


@pytest.fixture(autouse=True)
def small_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_copy, "READBACK_LAG", 4 * MiB)  # a 64 MiB disk still overlaps


@pytest.fixture
def point(tmp_path: Path) -> tuple[TieredStore, engine.DiskIndex, bytes]:
    image = tmp_path / "disk.img"
    data = build_image(image, LAYOUT)
    store = Store(tmp_path / "store")
    with store.begin_point("p1") as pending, FileSource(image) as source:
        backup_disk(pending, "2000", source)
        pending.commit({})
    return TieredStore(store, None), store.open_point("p1").index("2000"), data


def target_of(sim: Simulator, vm: str) -> DiskTarget:
    disk = sim.vm(vm)["disks"][0]
    return DiskTarget(2000, "Hard disk 1", "DC", disk["datastore"], disk["flat_path"])


class Reads:
    def __init__(self) -> None:
        self.offsets: set[int] = set()
        self.during_upload = 0
        self.uploading = False


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """The offsets DatastoreFile.readinto is asked for, and how many reads came during an upload."""
    seen = Reads()
    real_write, real_read = vcenter.Upload.write, vcenter.DatastoreFile.readinto

    def write(upload, data):
        seen.uploading = upload.sent + len(data) < upload.size
        return real_write(upload, data)

    def readinto(file, offset, buffer):
        seen.offsets.add(offset)
        seen.during_upload += seen.uploading
        return real_read(file, offset, buffer)

    monkeypatch.setattr(vcenter.Upload, "write", write)
    monkeypatch.setattr(vcenter.DatastoreFile, "readinto", readinto)
    return seen


def test_a_disk_is_written_exactly_and_every_chunk_read_back(sim, conn, point, reads) -> None:
    source, index, data = point
    seen: list[int] = []
    write_and_check(conn, target_of(sim, "target-0"), source, index, Monitor(progress=seen.append))
    assert sim.disk_file("target-0", 0).read_bytes() == data
    assert seen[-1] == 2 * len(data) and seen == sorted(seen)
    assert reads.offsets == {i * CHUNK_SIZE for i in range(len(index))}  # every chunk, zero ones too
    assert reads.during_upload > 0  # the read-back overlapped the upload


def test_a_chunk_that_reads_back_different_fails_the_restore_naming_where(sim, conn, point, monkeypatch) -> None:
    source, index, _ = point
    bad = 5 * CHUNK_SIZE
    corrupt_reads_at(monkeypatch, bad)
    with pytest.raises(NotExact, match=f"Hard disk 1 differs from the point at byte {bad}: the restore is not exact"):
        write_and_check(conn, target_of(sim, "target-1"), source, index, Monitor())


def test_a_file_that_reads_back_short_fails_as_incomplete(sim, conn, point, monkeypatch) -> None:
    source, index, _ = point
    real = vcenter.DatastoreFile.readinto

    def short_at_the_end(self, offset, buffer):
        n = real(self, offset, buffer)
        return n - 1 if offset == (len(index) - 1) * CHUNK_SIZE else n

    monkeypatch.setattr(vcenter.DatastoreFile, "readinto", short_at_the_end)
    with pytest.raises(NotExact, match="reads back shorter than the point: the restore is incomplete"):
        write_and_check(conn, target_of(sim, "target-2"), source, index, Monitor())


def test_what_reads_back_wrong_during_the_upload_is_read_again_after_it(sim, conn, point, monkeypatch) -> None:
    # As from a vCenter that writes the file elsewhere and renames it at the end: during the upload
    # nothing reads back right. The restore must still succeed, from the second reading.
    source, index, data = point
    uploading = threading.Event()
    real_upload, real_read = vcenter.DatastoreFile.upload, vcenter.DatastoreFile.readinto
    wrong = []

    class Tracked:
        def __init__(self, upload):
            self.upload = upload

        def __enter__(self):
            uploading.set()
            return self.upload.__enter__()

        def __exit__(self, *exc):
            try:
                return self.upload.__exit__(*exc)
            finally:
                uploading.clear()

    def stale_while_uploading(self, offset, buffer):
        n = real_read(self, offset, buffer)
        if uploading.is_set():
            wrong.append(offset)
            buffer[:1] = bytes([buffer[0] ^ 0xFF])
        return n

    monkeypatch.setattr(vcenter.DatastoreFile, "upload", lambda self, size: Tracked(real_upload(self, size)))
    monkeypatch.setattr(vcenter.DatastoreFile, "readinto", stale_while_uploading)
    write_and_check(conn, target_of(sim, "target-3"), source, index, Monitor())
    assert wrong and sim.disk_file("target-3", 0).read_bytes() == data


def test_a_server_further_behind_than_the_lag_has_each_chunk_read_during_the_upload_not_after(
    sim, conn, point, monkeypatch
) -> None:
    # Socket buffers on the way can hold tens of MiB: here the file is 24 MiB behind what was sent
    # (the lag starts at 4). The read-back waits longer instead of deferring chunk after chunk to a
    # second reading once the PUT is answered.
    source, index, data = point
    behind = 24 * MiB
    progress = {"sent": 0, "size": len(data)}
    real_write, real_read = vcenter.Upload.write, vcenter.DatastoreFile.readinto
    reads: list[tuple[int, bool]] = []  # (offset, during the upload)

    def write(upload, data):
        n = real_write(upload, data)
        progress["sent"] = upload.sent
        return n

    def lagging_server(file, offset, buffer):
        uploading = progress["sent"] < progress["size"]
        reads.append((offset, uploading))
        n = real_read(file, offset, buffer)
        if uploading:
            return max(0, min(n, progress["sent"] - behind - offset))
        return n

    monkeypatch.setattr(vcenter.Upload, "write", write)
    monkeypatch.setattr(vcenter.DatastoreFile, "readinto", lagging_server)
    write_and_check(conn, target_of(sim, "target-6"), source, index, Monitor())

    assert sim.disk_file("target-6", 0).read_bytes() == data
    during = {offset for offset, uploading in reads if uploading}
    after = [offset for offset, uploading in reads if not uploading]
    assert not during & set(after), "a chunk read during the upload was read again after it"
    assert len(reads) <= len(index) + 4  # a few reads came too early while the lag grew


def test_cancelling_stops_the_upload_and_the_read_back(sim, conn, point) -> None:
    source, index, _ = point
    asked = []

    def cancel_after_three() -> bool:
        asked.append(1)
        return len(asked) > 3

    before = threading.active_count()
    with pytest.raises(engine.Cancelled):
        write_and_check(conn, target_of(sim, "target-4"), source, index, Monitor(should_cancel=cancel_after_three))
    assert threading.active_count() == before


def test_a_damaged_chunk_in_the_store_fails_the_restore_as_damage(sim, conn, point) -> None:
    source, index, _ = point
    digest = index.digest(0)
    chunk = source.local.chunk_path(digest)
    chunk.chmod(0o644)
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(engine.ChunkCorrupt):
        write_and_check(conn, target_of(sim, "target-5"), source, index, Monitor())


# helpers -----------------------------------------------------------------------------------------


def corrupt_reads_at(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    real = vcenter.DatastoreFile.readinto

    def corrupted(self, offset, buffer):
        n = real(self, offset, buffer)
        if offset == at:
            buffer[:1] = bytes([buffer[0] ^ 0xFF])
        return n

    monkeypatch.setattr(vcenter.DatastoreFile, "readinto", corrupted)
