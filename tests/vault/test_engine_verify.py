"""Damage: flipped bytes and missing chunks found by verify, corrupt indexes and manifests reported
clearly; and the index format itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vault import CS, DISK, MIXED_LAYOUT, backup, build_image, index_of
from vault.engine import (
    ChunkCorrupt,
    ChunkMissing,
    CorruptIndex,
    CorruptPoint,
    DiskIndex,
    DiskReader,
    PointNotFound,
    Store,
    restore_disk,
    verify_point,
)
from vault.engine.format import INDEX_MAGIC

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def point(tmp_path, store):
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    backup(store, "p1", image)
    return data


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def test_healthy_point_verifies(store, point):
    report = verify_point(store, "p1")
    assert report.ok and report.problems == []
    disk = report.disks[DISK]
    assert (disk.chunks, disk.zero_chunks, disk.unique_checked) == (7, 3, 4)
    assert "verified" in report.summary()


@pytest.mark.parametrize("chunk", [1, 2, 6])  # mixed (zstd), text (zstd), random short (raw)
def test_flipped_byte_in_a_chunk_is_found_with_disk_and_offset(store, point, chunk):
    index = index_of(store, "p1")
    path = store.chunk_path(index.digest(chunk))
    _flip(path, path.stat().st_size // 2)

    report = verify_point(store, "p1")
    assert not report.ok
    [problem] = report.problems
    assert (problem.disk_key, problem.offset, problem.reason) == (DISK, chunk * CS, "corrupt")
    assert problem.digest == index.digest(chunk).hex()
    assert f"disk {DISK} at byte {chunk * CS}" in report.summary()
    # reading the damaged chunk is an error, never silently wrong data
    with pytest.raises(ChunkCorrupt):
        restore_disk(store, index, io.BytesIO())
    reader = DiskReader(store, index)
    reader.seek(chunk * CS)
    with pytest.raises(ChunkCorrupt):
        reader.read(10)


def test_missing_chunk_is_reported(store, point):
    index = index_of(store, "p1")
    store.chunk_path(index.digest(5)).unlink()
    [problem] = verify_point(store, "p1").problems
    assert (problem.offset, problem.reason) == (5 * CS, "missing")
    with pytest.raises(ChunkMissing, match=index.digest(5).hex()):
        restore_disk(store, index, io.BytesIO())


def test_bad_header_byte_is_corrupt(store, point):
    path = store.chunk_path(index_of(store, "p1").digest(1))
    raw = bytearray(path.read_bytes())
    raw[0] = 7
    path.write_bytes(bytes(raw))
    [problem] = verify_point(store, "p1").problems
    assert "unknown header byte" in problem.detail


def _index_path(store: Store) -> Path:
    return store.points_dir / "p1" / f"{DISK}.idx"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) - 40], "truncated"),
        (lambda raw: raw[:10], "truncated"),
        (lambda raw: b"", "truncated"),
        (lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], "checksum"),
        (lambda raw: b"NOTANIDX" + raw[8:], "bad magic"),
        (lambda raw: raw[:8] + b"\x09\x00" + raw[10:], "version 9"),
    ],
)
def test_corrupt_index_is_a_clear_error(store, point, damage, message):
    path = _index_path(store)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptIndex, match=message) as caught:
        store.open_point("p1").index(DISK)
    assert str(path) in str(caught.value)
    report = verify_point(store, "p1")  # verify reports it rather than crashing
    assert not report.ok and message.split()[0] in report.disks[DISK].index_error


def test_missing_index_and_bad_manifest(store, point):
    _index_path(store).unlink()
    with pytest.raises(CorruptIndex, match="missing"):
        index_of(store, "p1")
    manifest = store.points_dir / "p1" / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(CorruptPoint, match="manifest.json is unreadable"):
        store.open_point("p1")
    manifest.unlink()
    with pytest.raises(CorruptPoint, match="no manifest.json"):
        store.open_point("p1")
    with pytest.raises(PointNotFound):
        verify_point(store, "nope")
    with pytest.raises(KeyError, match="no disk"):
        (store.points_dir / "p1" / "manifest.json").write_text(json.dumps({"disks": {}}))
        store.open_point("p1").index(DISK)


def test_index_round_trip_and_referenced():
    digests = bytes(32) + b"\x01" * 32 + b"\x02" * 32 + b"\x01" * 32
    index = DiskIndex(3 * CS + 5, CS, digests)
    again = DiskIndex.from_bytes(index.to_bytes())
    assert again == index and len(again) == 4
    assert again.digest(0) is None and again.digest(1) == b"\x01" * 32
    assert again.extent(3) == (3 * CS, 5)
    assert again.referenced() == {b"\x01" * 32, b"\x02" * 32}
    assert index.to_bytes().startswith(INDEX_MAGIC)
    with pytest.raises(ValueError):
        DiskIndex(CS + 1, CS, bytes(32))  # two chunks need two digests


def test_empty_disk(store, tmp_path):
    image = tmp_path / "empty.img"
    image.write_bytes(b"")
    result = backup(store, "p1", image)
    assert result.stats.chunks_total == 0
    out = io.BytesIO()
    restore_disk(store, index_of(store, "p1"), out)
    assert out.getvalue() == b"" and verify_point(store, "p1").ok


def test_engine_imports_no_django():
    code = "import sys, vault.engine; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
