"""`make bench-listing`: one page of a folder of many files against one page of a folder of 10, on a
real ext4 disk built by tools/diskimages.py (cached in .cache/diskimages after the first run).

Prints the median time of `FileSystem.list_page` (the first 200 entries, and the last page) for a
folder of FILES empty files and for a folder of 10, and of the full `list_dir` of the big folder for
comparison. The page reads every name of the folder but metadata (an inode each) for 200 entries
only, so the big folder's page should take a small multiple of the small one's, far below list_dir.

Usage: python tools/bench_listing.py [FILES]   (default 20,000; the image needs 16 KiB per file)
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recovery.filesystems import FileSystem, Page, open_disk  # noqa: E402
from tools import diskimages  # noqa: E402

RUNS = 5


def median_seconds(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_ext4(files: int) -> FileSystem:
    tree = {"many": {f"file-{i:06d}.txt": b"" for i in range(files)}, "few": {f"note-{i}.txt": b"" for i in range(10)}}
    size_mib = max(64, files * 16 // 1024 + 64)  # mke2fs gives one inode per 16 KiB
    started = time.perf_counter()
    image = diskimages.build_ext4_disk(tree, size_mib=size_mib, label="bench-listing")
    print(f"image: {image.name} ({time.perf_counter() - started:.1f} s to build or find)")
    handle = image.open("rb")
    layout = open_disk(handle, image.stat().st_size)
    return layout.filesystem(next(v.index for v in layout.volumes if v.browsable))


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    filesystem = open_ext4(files)
    last = (files - 1) // Page.SIZE * Page.SIZE
    rows = [
        ("page 1 of a folder of 10", median_seconds(lambda: filesystem.list_page("/few"))),
        (f"page 1 of a folder of {files:,}", median_seconds(lambda: filesystem.list_page("/many"))),
        (f"last page of a folder of {files:,}", median_seconds(lambda: filesystem.list_page("/many", last))),
        (f"whole list_dir of {files:,}", median_seconds(lambda: filesystem.list_dir("/many"))),
    ]
    for label, seconds in rows:
        print(f"{label:<40} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
