"""Errors raised by the store. Every message names the file, point or disk involved, because these
messages end up verbatim in job logs that an administrator reads without a debugger."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class StoreFull(StoreError):
    """The quota is reached or the device is out of space (ENOSPC/EDQUOT); nothing was published."""


class Cancelled(Exception):
    """`should_cancel` returned True; the pending point was aborted, nothing is visible. Not a
    StoreError: a cancelled job is not a failed one."""


class PointNotFound(StoreError, KeyError):
    # KeyError as well, so `except KeyError` around a lookup keeps working.
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PointInUse(StoreError):
    """A running backup builds on this point; it cannot be deleted until that backup ends."""


class PointExists(StoreError):
    """A committed point with that id exists already."""


class CorruptPoint(StoreError):
    """A point's manifest is missing or unreadable."""


class CorruptIndex(CorruptPoint):
    """A disk index is truncated, has a bad header or fails its checksum."""


class ChunkError(StoreError):
    """A chunk referenced by an index cannot be used."""

    def __init__(self, message: str, digest: bytes) -> None:
        super().__init__(message)
        self.digest = digest


class ChunkMissing(ChunkError):
    pass


class ChunkCorrupt(ChunkError):
    pass


class SourceError(StoreError):
    """The source returned less data than its declared size."""
