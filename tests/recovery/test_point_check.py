"""The check a destructive restore makes before writing (recovery.point_check), on a real store: each
distinct chunk read once, zero chunks not at all, a flipped byte reported with its disk and offset,
and a cancel honoured. No database, no vCenter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from recovery.point_check import CheckCancelled, find_unreadable_chunks
from tests.vault import CS
from vault.engine import FileSource, Store, TieredStore, backup_disk

FIRST, SECOND = 2000, 2001


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """One point with two disks: A B A 0 and B C (chunks A and B shared, one all-zero chunk)."""
    rng = random.Random(5)
    a, b, c = rng.randbytes(CS), rng.randbytes(CS), rng.randbytes(CS // 2)
    images = {FIRST: a + b + a + bytes(CS), SECOND: b + c}
    st = Store(tmp_path / "store")
    with st.begin_point("p1") as pending:
        for key, data in images.items():
            path = tmp_path / f"{key}.img"
            path.write_bytes(data)
            with FileSource(path) as source:
                backup_disk(pending, str(key), source)
        pending.commit({"vm": "test-vm"})
    return st


def indexes(store: Store) -> dict:
    point = store.open_point("p1")
    return {int(key): point.index(key) for key in point.disk_keys}


def test_each_distinct_chunk_is_read_once_and_zero_chunks_not_at_all(store):
    source = TieredStore(store, None)
    seen: list[tuple[int, int]] = []

    found = find_unreadable_chunks(source, indexes(store), [FIRST, SECOND], progress=lambda *p: seen.append(p))

    assert found == []
    assert source.local_reads == 3  # A, B and C
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)


def test_a_flipped_byte_is_reported_with_the_disk_and_offset_of_its_first_use(store):
    index = indexes(store)[SECOND]
    damaged = index.digest(1)  # C, used only by the second disk, at its second chunk
    path = store.chunk_path(damaged)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))

    [problem] = find_unreadable_chunks(TieredStore(store, None), indexes(store), [FIRST, SECOND])

    assert (problem.digest, problem.disk_key, problem.offset) == (damaged, SECOND, CS)
    assert not problem.archived and problem.detail


def test_only_the_disks_asked_for_are_read(store):
    source = TieredStore(store, None)
    assert find_unreadable_chunks(source, indexes(store), [SECOND]) == []
    assert source.local_reads == 2  # B and C


def test_a_cancel_stops_the_check(store):
    with pytest.raises(CheckCancelled):
        find_unreadable_chunks(TieredStore(store, None), indexes(store), [FIRST, SECOND], should_cancel=lambda: True)
