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
    """The chunk's bytes are not what its digest names (bad header, does not decompress, wrong size
    or wrong SHA-256). The store that found it has moved it aside (`Store.quarantine_chunk`)."""


class ChunkQuarantined(ChunkCorrupt):
    """The chunk was found corrupt earlier and sits in bad/; no good copy is back in chunks/ yet."""


class SourceError(StoreError):
    """The source returned less data than its declared size."""
