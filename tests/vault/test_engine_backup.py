"""Backup and restore: round trips, zero chunks, raw chunks, deduplication, the CBT path, DiskReader."""

from __future__ import annotations

import io
import os
import random

import pytest

from tests.vault import (
    CS,
    DISK,
    MIB,
    CountingSource,
    backup,
    build_image,
    chunk_files,
    index_of,
    overwrite,
    restored,
    sha256,
)
from tests.vault.engine_helpers import counted_backup
from tools import diskimages
from vault.engine import DiskReader, FileSource, PointExists, PointNotFound, SourceError, backup_disk, restore_disk
from vault.engine.format import RAW, ZSTD


def test_round_trip_is_byte_identical(store, mixed, tmp_path):
    path, data = mixed
    assert len(data) % CS != 0
    result = backup(store, "p1", path)

    stats = result.stats
    assert (stats.path, stats.logical_bytes, stats.bytes_read) == ("full", len(data), len(data))
    assert (stats.chunks_total, stats.chunks_zero, stats.chunks_new, stats.chunks_reused) == (7, 3, 4, 0)
    index = index_of(store, "p1")
    zero_chunks = [i for i in range(len(index)) if index.digest(i) is None]
    assert zero_chunks == [0, 3, 4]
    assert index.extent(6) == (6 * CS, len(data) - 6 * CS)

    # to a path (pwrite, holes), to a stream (in order), and through DiskReader
    out = tmp_path / "restored.img"
    restore_disk(store, index, out, threads=2)
    assert sha256(out.read_bytes()) == sha256(data)
    assert sha256(restored(store, "p1")) == sha256(data)
    with DiskReader(store, index) as reader:
        assert sha256(reader.read()) == sha256(data)
    # zero chunks became holes, not written blocks
    assert out.stat().st_blocks * 512 <= len(data) - len(zero_chunks) * CS + MIB


def test_zero_chunks_are_indexed_but_never_stored(store, tmp_path):
    path = tmp_path / "zero.img"
    data = build_image(path, [("zero", 3 * CS + 4096)])
    result = backup(store, "p1", path)
    assert (result.stats.chunks_zero, result.stats.chunks_new, result.stats.bytes_stored_new) == (4, 0, 0)
    assert chunk_files(store) == set()
    assert restored(store, "p1") == data


def test_only_nonzero_chunks_are_stored(store, mixed):
    path, data = mixed
    result = backup(store, "p1", path)
    zero = sum(1 for o in range(0, len(data), CS) if not any(data[o : o + CS]))
    assert result.stats.chunks_zero == zero == 3
    assert len(chunk_files(store)) == result.stats.chunks_new == result.stats.chunks_total - zero
    assert result.stats.bytes_stored_new == sum(f.stat().st_size for f in store.chunks_dir.rglob("*") if f.is_file())


def test_incompressible_chunks_are_stored_raw_and_text_compressed(store, tmp_path):
    path = tmp_path / "two.img"
    build_image(path, [("random", CS), ("text", CS)])
    backup(store, "p1", path)
    index = index_of(store, "p1")
    random_file = store.chunk_path(index.digest(0)).read_bytes()
    text_file = store.chunk_path(index.digest(1)).read_bytes()
    assert random_file[:1] == RAW and len(random_file) == CS + 1
    assert text_file[:1] == ZSTD and len(text_file) < CS // 2


def test_second_backup_stores_only_changed_chunks(store, mixed):
    path, data = mixed
    first = backup(store, "p1", path)
    before = chunk_files(store)
    # one change inside chunk 1, one straddling chunks 2/3 (chunk 3 was all zero)
    changed = overwrite(path, data, [(CS + 100, 5000), (3 * CS - 2000, 4000)])
    second = backup(store, "p2", path, previous=index_of(store, "p1"))

    s = second.stats
    assert s.path == "full" and s.bytes_read == len(data)
    assert s.chunks_new == 3
    assert s.chunks_zero == first.stats.chunks_zero - 1
    assert s.chunks_reused == s.chunks_total - s.chunks_new - s.chunks_zero
    assert len(chunk_files(store) - before) == 3
    assert restored(store, "p1") == data
    assert restored(store, "p2") == changed


def test_dedup_without_previous_uses_the_store(store, mixed):
    path, data = mixed
    backup(store, "p1", path)
    again = backup(store, "p2", path)  # no previous index: the existence check must find everything
    assert again.stats.chunks_new == 0
    assert restored(store, "p2") == data


def test_identical_chunks_within_one_disk_are_stored_once(store, tmp_path):
    path = tmp_path / "repeat.img"
    block = random.Random(5).randbytes(CS)
    path.write_bytes(block * 4)
    result = backup(store, "p1", path, threads=4)
    assert (result.stats.chunks_new, result.stats.chunks_reused) == (1, 3)
    assert len(chunk_files(store)) == 1
    assert restored(store, "p1") == block * 4


def test_cbt_reads_only_changed_areas_and_yields_a_full_image(store, mixed):
    path, data = mixed
    backup(store, "p1", path)
    areas = [(CS + 100, 5000), (3 * CS - 2000, 4000)]  # chunks 1, 2 and 3
    changed = overwrite(path, data, areas)
    # a change CBT does not report is not read: proof that unchanged chunks are taken from p1
    result, source = counted_backup(store, "p2", path, previous="p1", changed_areas=areas)

    assert result.stats.path == "cbt"
    assert source.bytes_read == result.stats.bytes_read == 3 * CS
    assert sorted(set(source.offsets)) == [CS, 2 * CS, 3 * CS]
    assert result.stats.chunks_new == 3
    assert restored(store, "p2") == changed  # every point is a full image
    assert restored(store, "p1") == data


def test_cbt_reads_grown_area_and_empty_change_list_reads_nothing(store, tmp_path):
    path = tmp_path / "grow.img"
    data = build_image(path, [("random", 2 * CS + 500)])
    backup(store, "p1", path)
    grown = data + random.Random(9).randbytes(CS)  # the old short last chunk is now full
    path.write_bytes(grown)
    _result, source = counted_backup(store, "p2", path, previous="p1", changed_areas=[])
    assert sorted(set(source.offsets)) == [2 * CS, 3 * CS]
    assert restored(store, "p2") == grown

    result, source = counted_backup(store, "p3", path, previous="p2", changed_areas=[])
    assert source.bytes_read == 0 and result.stats.chunks_reused == 4
    assert restored(store, "p3") == grown


def test_a_first_backup_with_areas_in_use_reads_only_them_and_the_rest_is_zeros(store, tmp_path):
    path = tmp_path / "thin.img"
    data = bytearray(4 * CS + 100)
    data[CS + 10 : CS + 20] = b"x" * 10  # in use: chunk 1
    data[4 * CS + 50 : 4 * CS + 60] = b"y" * 10  # in use: the short last chunk
    path.write_bytes(data)
    source = CountingSource(path)
    with store.begin_point("p1") as pending:
        result = backup_disk(pending, DISK, source, changed_areas=[(CS, 64 * 1024), (4 * CS, 100)])
        pending.commit({})
    source.close()
    assert sorted(set(source.offsets)) == [CS, 4 * CS]
    assert (result.stats.chunks_zero, result.stats.chunks_new) == (3, 2)
    assert restored(store, "p1") == bytes(data)


def test_disk_reader_random_access(store, mixed):
    path, data = mixed
    backup(store, "p1", path)
    reader = DiskReader(store, index_of(store, "p1"), cache_chunks=2)
    assert reader.readable() and reader.seekable() and reader.size == len(data)
    rng = random.Random(3)
    probes = [(CS - 10, 20), (2 * CS - 1, CS + 2), (0, 1), (len(data) - 5, 100), (len(data) + 10, 10)]
    probes += [(rng.randrange(len(data)), rng.randrange(1, 3 * MIB)) for _ in range(40)]
    for offset, length in probes:
        assert reader.seek(offset) == offset
        got = reader.read(length)
        assert got == data[offset : offset + length], (offset, length)
        assert reader.tell() == offset + len(got)
    reader.seek(-3, os.SEEK_END)
    assert reader.read() == data[-3:]
    reader.seek(CS)
    reader.seek(7, os.SEEK_CUR)
    buf = bytearray(10)
    assert reader.readinto(buf) == 10 and bytes(buf) == data[CS + 7 : CS + 17]
    with pytest.raises(ValueError):
        reader.seek(-1)
    # buffered wrappers (what dissect and zipfile use) work on top
    buffered = io.BufferedReader(reader, buffer_size=64 * 1024)
    buffered.seek(3 * CS - 3)
    assert buffered.read(6) == data[3 * CS - 3 : 3 * CS + 3]


def test_disk_reader_serves_zero_chunks_without_io(store, mixed, monkeypatch):
    path, data = mixed
    backup(store, "p1", path)
    index = index_of(store, "p1")
    calls = []
    real = store.read_chunk
    monkeypatch.setattr(store, "read_chunk", lambda *a, **k: calls.append(a) or real(*a, **k))
    reader = DiskReader(store, index)
    assert reader.read(CS) == bytes(CS)  # chunk 0 is all zero
    assert calls == []
    reader.seek(CS)
    reader.read(10)
    reader.read(10)
    assert len(calls) == 1  # then cached


def test_point_life_cycle(store, mixed):
    path, data = mixed
    backup(store, "2026-11-25T03.00", path)
    point = store.open_point("2026-11-25T03.00")
    assert point.meta == {"vm": "test-vm"} and point.disk_keys == [DISK]
    assert point.manifest.disks[DISK].stats["chunks_total"] == 7
    assert point.manifest.point_id == "2026-11-25T03.00" and point.manifest.committed_at
    assert store.list_points() == ["2026-11-25T03.00"]
    with pytest.raises(PointExists):
        store.begin_point("2026-11-25T03.00")
    for bad in ("", ".hidden", "a/b", "x" * 200):
        with pytest.raises(ValueError):
            store.begin_point(bad)
    assert [(p, k) for p, k, _ in store.iter_indexes()] == [("2026-11-25T03.00", DISK)]

    store.delete_point("2026-11-25T03.00")
    assert store.list_points() == []
    with pytest.raises(PointNotFound):
        store.open_point("2026-11-25T03.00")
    with pytest.raises(PointNotFound):
        store.delete_point("2026-11-25T03.00")
    assert chunk_files(store)  # chunks stay until a garbage collection


def test_exception_in_with_block_aborts(store, mixed):
    path, _data = mixed
    with pytest.raises(RuntimeError), store.begin_point("p1") as pending, FileSource(path) as source:
        backup_disk(pending, DISK, source)
        raise RuntimeError("boom")
    assert store.list_points() == [] and chunk_files(store) == set()
    assert list(store.staging_dir.iterdir()) == []


def test_source_shorter_than_declared_is_an_error(store, mixed):
    path, _data = mixed
    source = FileSource(path)
    source.size += CS  # pretend the disk is larger than the file
    with pytest.raises(SourceError, match="source ended"), store.begin_point("p1") as pending:
        backup_disk(pending, DISK, source)
    source.close()
    assert store.list_points() == [] and chunk_files(store) == set()


def test_several_disks_in_one_point_share_chunks(store, mixed, tmp_path):
    path, data = mixed
    with store.begin_point("p1") as pending, FileSource(path) as a, FileSource(path) as b:
        first = backup_disk(pending, "scsi0:0", a)
        second = backup_disk(pending, "scsi0:1", b)
        with pytest.raises(ValueError):
            backup_disk(pending, "scsi0:1", b)
        pending.commit({})
    assert second.stats.chunks_new == 0 and second.stats.chunks_reused == first.stats.chunks_new
    point = store.open_point("p1")
    assert point.disk_keys == ["scsi0:0", "scsi0:1"]
    out = io.BytesIO()
    restore_disk(store, point.index("scsi0:1"), out)
    assert out.getvalue() == data


def test_dissect_browses_a_file_system_through_disk_reader(store, tmp_path):
    from dissect.extfs import ExtFS
    from dissect.volume.disk import Disk

    blob = random.Random(11).randbytes(3 * MIB)
    tree = {"etc": {"hostname": "vm-42\n"}, "srv": {"data": {"blob.bin": blob}}}
    try:
        image = diskimages.build_ext4_disk(tree, size_mib=40, cache_dir=tmp_path / "cache")
    except diskimages.MissingToolError as err:
        pytest.skip(str(err))
    backup(store, "p1", image)

    reader = DiskReader(store, index_of(store, "p1"))
    [partition] = Disk(reader).partitions
    fs = ExtFS(partition.open())
    assert fs.get("etc/hostname").open().read() == b"vm-42\n"
    assert fs.get("srv/data/blob.bin").open().read() == blob
