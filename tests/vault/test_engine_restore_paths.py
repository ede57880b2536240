"""Whole-image restores to a file and to a stream: exact bytes, progress that ends at the image size,
and a cancel that stops the restore."""

from __future__ import annotations

import io

import pytest

from tests.vault import backup, index_of
from vault.engine import Cancelled, Monitor, restore_disk


@pytest.fixture
def point(store, mixed):
    image, data = mixed
    backup(store, "p1", image)
    return store, index_of(store, "p1"), data


@pytest.mark.parametrize("to", ["file", "stream"])
def test_a_restore_writes_the_exact_image_and_reports_progress_up_to_its_size(point, tmp_path, to):
    store, index, data = point
    seen: list[int] = []
    if to == "file":
        stats = restore_disk(store, index, tmp_path / "out.img", threads=2, monitor=Monitor(progress=seen.append))
        restored = (tmp_path / "out.img").read_bytes()
    else:
        out = io.BytesIO()
        stats = restore_disk(store, index, out, threads=2, monitor=Monitor(progress=seen.append))
        restored = out.getvalue()
    assert restored == data
    assert seen == sorted(seen) and seen[-1] == len(data) == stats.image_size
    assert stats.chunks_read + stats.chunks_zero == len(index)


@pytest.mark.parametrize("to", ["file", "stream"])
def test_a_cancelled_restore_stops_with_cancelled(point, tmp_path, to):
    store, index, _data = point
    asked = 0

    def should_cancel() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    dest = tmp_path / "out.img" if to == "file" else io.BytesIO()
    with pytest.raises(Cancelled, match="cancelled at byte"):
        restore_disk(store, index, dest, threads=2, monitor=Monitor(should_cancel=should_cancel))
