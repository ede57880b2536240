"""`make bench-listing`: one page of a folder of many files against one page of a folder of 10, on a
real NTFS disk built by tools/diskimages.py (cached in .cache/diskimages after the first run).

Prints the median time of a page of 200 entries (the first and the last) read three ways:
- live (`FileSystem.list_page`): every name of the folder is read and sorted, metadata for the page only;
  what a point without a catalog gets, and every folder under recovery.folder_index.MIN_ENTRIES;
- through the folder's listing index (recovery.folder_index, written when the point is catalogued): one
  chunk of 1,000 names decoded and the page's 200 nodes read by id. The database read of that chunk
  (one or two rows of a few KiB by a unique index) is not in this figure.

Usage: python tools/bench_listing.py [FILES]   (default 100,000)
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

RUNS = 3
CHUNK = 1_000  # recovery.folder_index.CHUNK (that module needs Django; its encoding is repeated here)


def median_seconds(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_ntfs(files: int) -> FileSystem:
    """NTFS, the Windows file server's case; and its images build in seconds at 100,000 files, where
    mke2fs -d links each file into the folder by a linear scan (over 15 minutes)."""
    tree = {"many": {f"file-{i:06d}.txt": b"" for i in range(files)}, "few": {f"note-{i}.txt": b"" for i in range(10)}}
    size_mib = max(64, files * 2 // 1024 + 64)  # an MFT record (1 KiB) and index space per file
    started = time.perf_counter()
    image = diskimages.build_ntfs_disk(tree, size_mib=size_mib, label="bench-listing")
    print(f"image: {image.name} ({time.perf_counter() - started:.1f} s to build or find)")
    handle = image.open("rb")
    layout = open_disk(handle, image.stat().st_size)
    return layout.filesystem(next(v.index for v in layout.volumes if v.browsable))


def indexed_page(filesystem: FileSystem, folder: str, chunks: list[str], offset: int) -> Callable[[], object]:
    """A page read as recovery.folder_index reads it: decode the chunk(s), read the page's nodes by id."""
    import zstandard

    blobs = [zstandard.ZstdCompressor(level=3).compress(text.encode()) for text in chunks]

    def read() -> object:
        start = offset // CHUNK
        listed = []
        for blob in blobs[start : start + 2]:
            for line in zstandard.ZstdDecompressor().decompress(blob).decode().split("\n"):
                head, _, name = line.partition("\t")
                listed.append((name, int(head[1:])))
        page = listed[offset - start * CHUNK : offset - start * CHUNK + Page.SIZE]
        return filesystem.entries_by_id(folder, page)

    return read


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    filesystem = open_ntfs(files)
    entries = filesystem.list_dir("/many")  # what the catalog walk reads, and indexes
    lines = [f"{'d' if e.is_dir else 'f'}{e.file_id}\t{e.name}" for e in entries]
    chunks = ["\n".join(lines[i : i + CHUNK]) for i in range(0, len(lines), CHUNK)]
    last = (files - 1) // Page.SIZE * Page.SIZE
    assert indexed_page(filesystem, "/many", chunks, last)() == filesystem.list_page("/many", last).entries
    rows = [
        ("live: page 1 of a folder of 10", median_seconds(lambda: filesystem.list_page("/few"))),
        (f"live: page 1 of a folder of {files:,}", median_seconds(lambda: filesystem.list_page("/many"))),
        (f"live: last page of {files:,}", median_seconds(lambda: filesystem.list_page("/many", last))),
        (f"index: page 1 of {files:,}", median_seconds(indexed_page(filesystem, "/many", chunks, 0))),
        (f"index: last page of {files:,}", median_seconds(indexed_page(filesystem, "/many", chunks, last))),
    ]
    for label, seconds in rows:
        print(f"{label:<40} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
