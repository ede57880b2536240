"""Where disk images are read from during a backup.

The backup asks for one chunk at a time: `readinto(offset, buffer)` with a chunk-aligned offset and a
4 MiB buffer (shorter for the last chunk). A source may return fewer bytes than asked (the caller
loops), must be safe to call from several threads at once, and returns 0 only past the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import SourceError


@runtime_checkable
class Source(Protocol):
    @property
    def size(self) -> int:
        """The image's size in bytes (only read: a source may compute it, e.g. with a HEAD request)."""
        ...

    def readinto(self, offset: int, buffer: memoryview) -> int: ...


class FileSource:
    """A local image file or block device, read with pread so threads share one descriptor."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        # lseek to the end works for block devices too, where st_size is 0.
        self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def readinto(self, offset: int, buffer: memoryview) -> int:
        return os.preadv(self._fd, [buffer], offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_exact(source: Source, offset: int, buffer: memoryview) -> None:
    """Fill `buffer` from `offset`; a source ending early is an error, never a silently short chunk."""
    done = 0
    while done < len(buffer):
        n = source.readinto(offset + done, buffer[done:])
        if not n:
            raise SourceError(
                f"source ended at byte {offset + done} although it declared {source.size} bytes (did the disk shrink?)"
            )
        done += n
