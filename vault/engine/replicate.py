"""Copying a recovery point from the local store to the vault: only the chunks the vault lacks.

1. List the vault's chunks once (a few requests, however large the vault).
2. Upload the point's missing chunks from a thread pool, each put-if-absent, through one shared
   bandwidth limit, each checked (decoded and hashed) first: a corrupt local chunk is quarantined
   and stops the replication with ChunkCorrupt, so bad bytes never reach the vault. A chunk that
   arrived stays: a replication killed halfway is resumed by running it again, and the listing in
   step 1 skips everything already there.
3. Verify: list again and check that every chunk the point needs is present with the size we
   expect (the service already checked each upload's MD5); re-upload anything missing.
4. Publish the indexes, then the manifest. Only now does the point exist in the vault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import leases
from .errors import Cancelled, ChunkCorrupt, StoreError
from .format import DiskIndex
from .parallel import bounded_map
from .remote import RemoteVault
from .store import Store


@dataclass
class ReplicationStats:
    point_id: str
    chunks: int = 0  # distinct stored chunks the point needs
    chunks_uploaded: int = 0
    chunks_present: int = 0  # already in the vault (earlier points, or an interrupted attempt)
    bytes_uploaded: int = 0
    already_replicated: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def rate(self) -> float:
        return self.bytes_uploaded / self.seconds if self.seconds else 0.0


class RateLimit:
    """A token bucket shared by upload threads: at most `bytes_per_second` on average, bursts of a
    second's worth. None means unlimited."""

    def __init__(self, bytes_per_second: float | None) -> None:
        self.rate = bytes_per_second
        self._lock = threading.Lock()
        self._allowance = bytes_per_second or 0.0
        self._last = time.monotonic()

    def take(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            self._allowance = min(self.rate, self._allowance + (now - self._last) * self.rate)
            self._last = now
            self._allowance -= nbytes
            wait = -self._allowance / self.rate if self._allowance < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True)
class UploadLimits:
    """How hard a replication may push: `threads` uploads at once, within `bytes_per_second`
    (None: unlimited) shared by all of them."""

    threads: int = 4
    bytes_per_second: float | None = None


def replicate_point(
    store: Store,
    vault: RemoteVault,
    point_id: str,
    *,
    limits: UploadLimits = UploadLimits(),
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    meta: dict[str, Any] | None = None,
) -> ReplicationStats:
    """Replicate one committed local point. `progress(chunks_done, chunks_total)`; `should_cancel()`
    is asked before each upload (True raises Cancelled); `meta` is merged into the vault manifest's
    "meta" (e.g. the time of replication). Idempotent."""
    started = time.perf_counter()
    stats = ReplicationStats(point_id)
    vault.open(create=True)
    point = store.open_point(point_id)
    with leases.writing(vault.backend):
        if vault.has_point(point_id):
            stats.already_replicated = True
        else:
            upload = _Upload(store, vault, point_id, limits, should_cancel)
            indexes = {key: point.index(key) for key in point.disk_keys}
            upload.chunks(indexes.values(), stats, progress)
            vault.publish_point(
                point_id,
                point.manifest.with_meta(meta or {}),
                {key: index.to_bytes() for key, index in indexes.items()},
            )
    stats.seconds = time.perf_counter() - started
    return stats


class _Upload:
    """Steps 1 to 3 of a replication: the chunks of a point's indexes, into the vault."""

    def __init__(
        self,
        store: Store,
        vault: RemoteVault,
        point_id: str,
        limits: UploadLimits,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.point_id = point_id
        self.threads = max(1, limits.threads)
        self.rate = RateLimit(limits.bytes_per_second)
        self.should_cancel = should_cancel
        self.overwrite = False  # the second pass replaces blobs found damaged by the first verification

    def chunks(
        self, indexes: Iterable[DiskIndex], stats: ReplicationStats, progress: Callable[[int, int], None] | None
    ) -> None:
        """Upload what the vault lacks, verify, and upload once more what the check found missing."""
        needed: dict[str, bytes] = {}  # vault blob name -> digest
        for index in indexes:
            for digest in index.referenced():
                needed[self.vault.chunk_name(digest)] = digest
        stats.chunks = len(needed)
        present = self.vault.chunk_blobs()
        missing = [digest for name, digest in sorted(needed.items()) if name not in present]
        stats.chunks_present = stats.chunks - len(missing)
        done = stats.chunks_present
        if progress is not None:
            progress(done, stats.chunks)
        for attempt in range(2):
            with ThreadPoolExecutor(self.threads, thread_name_prefix="vault-upload") as pool:
                for sent in bounded_map(pool, self._one, missing, 2 * self.threads):
                    stats.chunks_uploaded += 1 if sent else 0
                    stats.bytes_uploaded += sent
                    done += 1
                    if progress is not None:
                        progress(min(done, stats.chunks), stats.chunks)
            missing = _unverified(self.store, self.vault, needed)
            if not missing:
                return
            self.overwrite = True
            if attempt:
                raise StoreError(
                    f"{len(missing)} chunk(s) of point {self.point_id} are still missing or the wrong size in "
                    f"{self.vault.description} after upload (first: {missing[0].hex()})"
                )

    def _one(self, digest: bytes) -> int:
        """Runs in the pool: upload one chunk; the bytes sent (0 if the vault had it meanwhile)."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"replication of {self.point_id} cancelled")
        try:
            # Decoded and hashed before it leaves: a corrupt local chunk is quarantined (the next
            # backup stores it again) and never uploaded over a vault that may hold it whole.
            data = self.store.read_chunk_file(digest)
        except ChunkCorrupt as err:
            raise ChunkCorrupt(
                f"replication of point {self.point_id} stopped, nothing bad was uploaded: {err}", digest
            ) from err
        self.rate.take(len(data))
        return len(data) if self.vault.put_chunk(digest, data, overwrite=self.overwrite) else 0


def _unverified(store: Store, vault: RemoteVault, needed: dict[str, bytes]) -> list[bytes]:
    """Chunks absent from a fresh listing or of another size than the local file (plus sealing)."""
    listing = vault.chunk_blobs()
    bad = []
    for name, digest in sorted(needed.items()):
        info = listing.get(name)
        if info is None:
            bad.append(digest)
            continue
        try:
            local = store.chunk_path(digest).stat().st_size
        except FileNotFoundError:
            continue  # nothing to compare with; presence is what we can check
        if info.size != vault.sealer.sealed_size(local):
            bad.append(digest)
    return bad
