"""Where a served point's bytes come from: the local store and the vault, through one shared cache,
and the check that refuses, before anything is mounted, a point that could not be read whole."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instant.view.shared_cache import SharedChunkFiles
from vault import engine
from vault.engine.blobs import ARCHIVE

# 64 decoded 4 MiB chunks: 256 MiB, enough for the blocks a booting guest reads again and again.
CACHE_CHUNKS = 64


class Unservable(Exception):
    """The point cannot be served; the message is one sentence saying why (and what to do)."""


class ChunkCache:
    """Decoded chunks by digest, least recently used out, shared by every disk (and every point) a
    process serves: disks of one VM share chunks, and a digest names the same bytes everywhere.
    Thread-safe; two threads missing the same chunk at once may both read it (no lock over I/O)."""

    def __init__(
        self, source: engine.TieredStore, capacity: int = CACHE_CHUNKS, shared: SharedChunkFiles | None = None
    ) -> None:
        self.source = source
        self.capacity = max(1, capacity)
        self.shared = shared  # vault chunks on local disk, shared with the other servers
        self.bytes_read = 0  # plaintext bytes fetched from the store, the shared cache or the vault
        self.shared_reads = 0
        self._chunks: OrderedDict[bytes, memoryview] = OrderedDict()
        self._lock = threading.Lock()

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        with self._lock:
            data = self._chunks.get(digest)
            if data is not None:
                self._chunks.move_to_end(digest)
                return data
        data = self._fetch(digest, length, verify)
        with self._lock:
            self.bytes_read += len(data)
            self._chunks[digest] = data
            while len(self._chunks) > self.capacity:
                self._chunks.popitem(last=False)
        return data

    def _fetch(self, digest: bytes, length: int, verify: bool) -> memoryview:
        local = self.source.local
        if self.shared is None or self.source.vault is None or (local is not None and local.has_chunk(digest)):
            return self.source.read_chunk(digest, length, verify=verify)
        data = self.shared.get(digest, length)
        if data is not None:
            with self._lock:
                self.shared_reads += 1
            return data
        data = self.source.read_chunk(digest, length, verify=verify)
        self.shared.put(digest, data)
        return data


@dataclass(frozen=True)
class VaultConfig:
    """The vault, as a JSON file the product writes (mode 0600: it may hold a secret):
    {"kind": "directory", "directory": PATH} or {"kind": "azure", "container": NAME, and
    "connection_string" or "account_url" (+ "account_key", else the default Azure credential)},
    plus "encryption_key" when the vault is encrypted."""

    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> VaultConfig:
        """From a file, or from standard input for "-": what the product does, so the vault's secret
        (kept encrypted in its database) is never written out in the clear."""
        if str(path) == "-":
            text = sys.stdin.read()
        else:
            if os.stat(path).st_mode & 0o077:
                raise Unservable(f"{path} may hold the vault's secret but others can read it: chmod 600 it.")
            text = path.read_text()
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("kind") not in ("directory", "azure"):
            raise Unservable(f"{path} does not describe a vault (JSON with kind directory or azure).")
        return cls(document)

    def open(self) -> engine.RemoteVault:
        doc = self.document
        key = engine.parse_key(doc["encryption_key"]) if doc.get("encryption_key") else None
        if doc["kind"] == "directory":
            return engine.RemoteVault(engine.blobs.DirectoryBackend(doc["directory"]), key)
        from vault.engine.azure_blob import AzureBlobBackend, default_credential  # the Azure SDK only when used

        if doc.get("connection_string"):
            backend = AzureBlobBackend.from_connection_string(doc["connection_string"], doc["container"])
            return engine.RemoteVault(backend, key)
        credential = doc.get("account_key") or default_credential()
        return engine.RemoteVault(AzureBlobBackend.from_account(doc["account_url"], doc["container"], credential), key)


def open_point(source: engine.TieredStore, point_id: str) -> engine.Point | engine.RemotePoint:
    """The point's manifest and indexes, or Unservable with the sentence why; checks that every chunk
    it needs can be read now (`check_chunks`)."""
    try:
        point = source.open_point(point_id)
        indexes = {key: point.index(key) for key in point.disk_keys}
    except engine.PointNotFound:
        where = "the local store or the vault" if source.vault is not None else "the local store"
        raise Unservable(f"Recovery point {point_id} is not in {where}, so there is nothing to serve.") from None
    except (engine.StoreError, engine.BackendError, KeyError) as exc:
        raise Unservable(f"Recovery point {point_id} cannot be opened: {exc}.") from None
    check_chunks(source, point_id, indexes)
    return point


def check_chunks(source: engine.TieredStore, point_id: str, indexes: dict[str, engine.DiskIndex]) -> None:
    """Refuse up front a point a guest could not read whole: a guest that meets an unreadable block
    half-way through booting fails far more obscurely. The local store answers with a stat per chunk;
    what it lacks is looked up in one listing of the vault, where an archived chunk needs a
    rehydration (hours, billed) that nothing here starts."""
    wanted: set[bytes] = set()
    for index in indexes.values():
        wanted |= index.referenced()
    local = source.local
    elsewhere = {d for d in wanted if local is None or not local.has_chunk(d)}
    if not elsewhere:
        return
    if source.vault is None:
        raise Unservable(
            f"{len(elsewhere)} chunk(s) of recovery point {point_id} are missing from the local store and no vault "
            "is configured: the point cannot be served."
        )
    vault = source.vault
    try:
        blobs = vault.open().chunk_blobs()
    except (engine.StoreError, engine.BackendError) as exc:
        raise Unservable(f"The vault holding recovery point {point_id} cannot be listed: {exc}.") from None
    names = {vault.chunk_name(d) for d in elsewhere}
    archived = sum(1 for name in names if name in blobs and blobs[name].tier == ARCHIVE)
    missing = sum(1 for name in names if name not in blobs)
    if archived:
        raise Unservable(
            f"{archived} chunk(s) of recovery point {point_id} are in the vault's Archive tier: rehydrate the "
            "point first (hours, billed by Azure); nothing was mounted."
        )
    if missing:
        raise Unservable(
            f"{missing} chunk(s) of recovery point {point_id} are in neither the local store nor the vault: "
            "the point is damaged and cannot be served."
        )
