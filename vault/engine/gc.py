"""Garbage collection of chunks no recovery point needs any more, on both tiers, beside running backups.

Mark and sweep, as Proxmox Backup Server does it: mark every chunk referenced by any index, then
sweep unmarked chunks not used since a cutoff. Backups keep running meanwhile; what keeps them safe:

* A backup reusing a chunk it found in the store touches it (`Store.touch_chunk`), and a chunk it
  writes is new: both have an mtime after the backup started. The cutoff is the earlier of
  "now - grace" and the start of the oldest running backup, so neither kind is ever swept.
* A backup reusing its previous point's chunks without looking (the `previous` index) has that
  point pinned as its base: `delete_point` refuses it, so its chunks stay marked.
* The sweep renames a chunk into trash/, then looks at its mtime again: a backup that touched it in
  between gets it back; a backup touching it after the rename finds nothing and stores its own copy.
  The sweep holds trash.lock shared, so `Store.recover()` never empties trash/ under it; a
  `gc-*` entry left by a GC that died is put back into chunks/ by the next recover().

Quarantined chunks (bad/) are not chunks: they are never counted or marked. A bad/ record is
evidence, kept for the grace period after the quarantine; after that it goes once it is marked
repaired or no point references the chunk any more. An unrepaired record of a chunk some point still
needs stays, because it is what tells backups not to trust that digest.

The grace period (24 h by default, like PBS) also covers clocks and file systems with coarse times.

In the vault, replications and a GC exclude each other with marker blobs (`leases.py`), and the
sweep removes chunks and the blobs of unpublished points (interrupted replications) older than the
grace period.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import fsutil, leases
from .format import MANIFEST
from .remote import BAD, CHUNKS, POINTS, RemoteVault
from .store import GC_TRASH_PREFIX, REASON_SUFFIX, Store

DEFAULT_GRACE_SECONDS = 24 * 3600


@dataclass
class GcReport:
    tier: str  # "local" or "vault"
    points: int = 0
    chunks_marked: int = 0
    chunks_seen: int = 0
    chunks_swept: int = 0
    chunks_kept_young: int = 0  # unreferenced but used after the cutoff
    bytes_freed: int = 0
    other_blobs_swept: int = 0  # vault: blobs of unpublished points, stale markers
    bad_swept: int = 0  # quarantine records (bad/) past the grace period, repaired or unreferenced
    dry_run: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        return (
            f"{self.tier}: {self.points} points, {self.chunks_marked} chunks in use, "
            f"{self.chunks_swept} unused chunks swept ({verb} {self.bytes_freed} bytes), "
            f"{self.chunks_kept_young} unused but recent chunks kept"
            + (f", {self.bad_swept} old quarantined chunks removed" if self.bad_swept else "")
        )


def collect_local(store: Store, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False) -> GcReport:
    started = time.time()
    # On the store's own clock: a chunk touched from now on must not look older than the cutoff.
    unused_since = min(started, fsutil.file_system_now(store.root)) - grace_seconds
    cutoff = unused_since
    report = GcReport("local", dry_run=dry_run)
    # Running backups first: anything they write or touch from now on is after the cutoff.
    live = store.live_backups()
    for staging in live:
        with contextlib.suppress(FileNotFoundError):  # it committed meanwhile: its point is marked below
            cutoff = min(cutoff, os.stat(staging / "lock").st_mtime)
    marked: set[bytes] = set()
    for point_id in store.list_points():
        report.points += 1
        point = store.open_point(point_id)  # a corrupt point stops the GC: better than sweeping its chunks
        for key in point.disk_keys:
            marked |= point.index(key).referenced()
    report.chunks_marked = len(marked)

    if dry_run:
        _sweep_chunks(store, marked, cutoff, report)
    else:
        with store.trash_in_use():
            _sweep_chunks(store, marked, cutoff, report)
    _sweep_bad(store, marked, unused_since, report)
    if not dry_run:
        store.release(report.bytes_freed)
    report.seconds = time.time() - started
    return report


def _sweep_chunks(store: Store, marked: set[bytes], cutoff: float, report: GcReport) -> None:
    for sub in os.scandir(store.chunks_dir):
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub.path):
            report.chunks_seen += 1
            try:
                digest = bytes.fromhex(entry.name)
            except ValueError:
                continue  # not ours
            if digest in marked:
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime >= cutoff:
                report.chunks_kept_young += 1
                continue
            if report.dry_run:
                report.chunks_swept += 1
                report.bytes_freed += st.st_size
                continue
            freed = _sweep_chunk(store, Path(entry.path), cutoff)
            if freed is not None:
                report.chunks_swept += 1
                report.bytes_freed += freed
            else:
                report.chunks_kept_young += 1


def _sweep_bad(store: Store, marked: set[bytes], cutoff: float, report: GcReport) -> None:
    """Remove bad/ records quarantined before `cutoff` that no longer matter (see the module doc)."""
    # Unrepaired and still referenced: the record that keeps backups from trusting the digest.
    needed = store.bad_chunks() & marked
    for entry in os.scandir(store.bad_dir):
        name = entry.name
        temp = name.startswith(".")  # a reason file whose writer died before renaming it
        try:
            digest = bytes.fromhex(name.lstrip(".")[:64])
            st = entry.stat()
        except (ValueError, FileNotFoundError):
            continue  # not ours, or removed meanwhile
        if st.st_mtime >= cutoff or (digest in needed and not temp):
            continue
        if not name.endswith(REASON_SUFFIX) and not temp:
            report.bad_swept += 1
            report.bytes_freed += st.st_size
        if not report.dry_run:
            Path(entry.path).unlink(missing_ok=True)


def _sweep_chunk(store: Store, path: Path, cutoff: float) -> int | None:
    """Remove one chunk unless a backup touched it at the last moment; the freed bytes, or None."""
    doomed = store.trash_dir / f"{GC_TRASH_PREFIX}{path.name}.{secrets.token_hex(4)}"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return None
    st = os.stat(doomed)
    if st.st_mtime >= cutoff:
        os.rename(doomed, path)  # touched between our look and the rename: it is in use again
        return None
    os.unlink(doomed)
    return st.st_size


def collect_vault(
    vault: RemoteVault, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False
) -> GcReport:
    started = time.time()
    report = GcReport("vault", dry_run=dry_run)
    vault.open()
    sweep = _VaultSweep(vault, report, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace_seconds))
    with leases.collecting(vault.backend):
        published = set(vault.list_points())
        marked = _mark_vault(vault, published, report)
        present = sweep.chunks(marked)
        # Quarantined blobs: evidence for the grace period, then gone once a good copy is back or
        # no point needs the chunk.
        sweep.blobs(BAD, lambda name: _bad_blob_done(name, present, marked), count_as="bad")
        # Indexes of points whose manifest never arrived (an interrupted replication).
        sweep.blobs(POINTS, lambda name: _unpublished(name, published))
        for name in leases.stale_markers(vault.backend):
            report.other_blobs_swept += 1
            if not dry_run:
                vault.backend.delete(name)
    report.seconds = time.time() - started
    return report


def _mark_vault(vault: RemoteVault, published: set[str], report: GcReport) -> set[str]:
    """The blob names of every chunk a published point references."""
    marked: set[str] = set()
    for point_id in sorted(published):
        report.points += 1
        point = vault.open_point(point_id)
        for key in point.disk_keys:
            marked |= {vault.chunk_name(d) for d in point.index(key).referenced()}
    report.chunks_marked = len(marked)
    return marked


def _bad_blob_done(name: str, present: set[str], marked: set[str]) -> bool:
    chunk = CHUNKS + name[len(BAD) :].removesuffix(".why")
    return chunk in present or chunk not in marked


def _unpublished(name: str, published: set[str]) -> bool:
    point_id = name[len(POINTS) :].split("/", 1)[0]
    return point_id not in published and not name.endswith("/" + MANIFEST)


class _VaultSweep:
    """Deletes blobs last modified before `cutoff` (only counts them in a dry run)."""

    def __init__(self, vault: RemoteVault, report: GcReport, cutoff: dt.datetime) -> None:
        self.vault = vault
        self.report = report
        self.cutoff = cutoff

    def chunks(self, marked: set[str]) -> set[str]:
        """Sweep unmarked chunk blobs older than the cutoff; returns the chunk blobs that stay."""
        present: set[str] = set()
        for info in list(self.vault.backend.list(CHUNKS)):
            self.report.chunks_seen += 1
            if info.name in marked:
                present.add(info.name)
            elif info.modified >= self.cutoff:
                self.report.chunks_kept_young += 1
                present.add(info.name)
            else:
                self.report.chunks_swept += 1
                self.report.bytes_freed += info.size
                self._delete(info.name)
        return present

    def blobs(self, prefix: str, done: Callable[[str], bool], *, count_as: str = "other") -> None:
        """Sweep blobs under `prefix` older than the cutoff for which `done(name)` holds. Counted
        as quarantined chunks (`.why` notes not counted) or as other blobs."""
        for info in list(self.vault.backend.list(prefix)):
            if info.modified >= self.cutoff or not done(info.name):
                continue
            if count_as == "bad":
                self.report.bad_swept += 0 if info.name.endswith(".why") else 1
            else:
                self.report.other_blobs_swept += 1
            self._delete(info.name)

    def _delete(self, name: str) -> None:
        if not self.report.dry_run:
            self.vault.backend.delete(name)
