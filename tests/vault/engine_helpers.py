"""Steps the vault engine tests share: a one-disk backup through a counting source, a chunk's digest,
a replicated point, and restoring into bytes."""

from __future__ import annotations

import io
from pathlib import Path

from tests.vault import DISK, CountingSource, backup, index_of
from vault.engine import DiskBackup, RemoteVault, Store, TieredStore, backup_disk, replicate_point, restore_disk
from vault.engine.blobs import Backend


def counted_backup(
    store: Store, point_id: str, image: Path, *, previous: str, changed_areas: list[tuple[int, int]]
) -> tuple[DiskBackup, CountingSource]:
    """A CBT backup of `image` on top of point `previous`; its result and the (closed) source, which
    says what was read."""
    source = CountingSource(image)
    try:
        with store.begin_point(point_id) as pending:
            result = backup_disk(pending, DISK, source, previous=index_of(store, previous), changed_areas=changed_areas)
            pending.commit({})
    finally:
        source.close()
    return result, source


def digest_of(store: Store, point_id: str, chunk: int) -> bytes:
    """The digest of a chunk that is not all zeros."""
    digest = index_of(store, point_id).digest(chunk)
    assert digest is not None
    return digest


def replicated(store: Store, backend: Backend, image: Path, key: bytes | None = None) -> RemoteVault:
    """Back `image` up as point p1 and replicate it to a vault on `backend` (sealed with `key`)."""
    backup(store, "p1", image)
    vault = RemoteVault(backend, key)
    replicate_point(store, vault, "p1")
    return vault


def restore_bytes(source: Store | TieredStore | RemoteVault, point_id: str) -> bytes:
    out = io.BytesIO()
    restore_disk(source, source.open_point(point_id).index(DISK), out, threads=2)
    return out.getvalue()
