"""The long-term tier: recovery points and their chunks in a `Backend` (Azure Blob, or a directory).

Layout in the back end (names relative to the container):

    vault.json                        {"format": 1, "chunk_size": ..., "encrypted": bool, "key_check": ...}
    chunks/<4 hex>/<64 hex>           a chunk file exactly as in the local store, sealed when encrypted;
                                      named by its digest, or by a keyed hash of it when encrypted
    points/<point id>/<disk key>.idx  the disk indexes (sealed when encrypted)
    points/<point id>/manifest.json   written last: a point exists in the vault once this blob does
    locks/writer-<token>.json         a replication in progress (refreshed every minute)
    locks/gc-<token>.json             a garbage collection in progress
    bad/<4 hex>/<64 hex>              a chunk blob that failed its check on a read, moved out of chunks/
                                      (sealed bytes as found) so the next replication uploads a good
                                      copy; `.why` beside it (sealed) says when and why

A chunk blob is put only if absent and never changed, so a blob that exists is whole (the service
checks each upload's MD5), until a read finds it damaged and quarantines it (copy to bad/, then
delete). A point is published by its manifest, after every chunk and index it
needs is in place; a replication that dies leaves chunks and perhaps indexes, which the next run
reuses and a garbage collection removes if nothing ever publishes them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .blobs import Backend, BackendError, BlobInfo, BlobNotFound
from .errors import ChunkCorrupt, ChunkMissing, CorruptPoint, PointNotFound, StoreError
from .format import CHUNK_SIZE, MANIFEST, DiskIndex, Manifest, ManifestView, check_name, decode_chunk, decode_chunk_file
from .sealing import Sealer, SealError

VAULT_FORMAT = 1
CONFIG = "vault.json"
CHUNKS = "chunks/"
POINTS = "points/"
BAD = "bad/"


class VaultKeyError(StoreError):
    """The vault is encrypted and no key, or another key, was given (or the reverse)."""


@dataclass
class RemotePoint(ManifestView):
    """A recovery point in the vault; indexes are fetched on first use and kept."""

    id: str
    vault: RemoteVault
    manifest: Manifest
    _indexes: dict[str, DiskIndex] = field(default_factory=dict)

    def index(self, disk_key: str) -> DiskIndex:
        if disk_key not in self._indexes:
            if disk_key not in self.manifest.disks:
                raise KeyError(f"recovery point {self.id} has no disk {disk_key!r}")
            name = index_name(self.id, disk_key)
            try:
                data = self.vault.read_blob(name)
            except BlobNotFound as err:
                raise CorruptPoint(f"vault point {self.id} lacks its index {name}") from err
            self._indexes[disk_key] = DiskIndex.from_bytes(data, name=f"vault index {name}")
        return self._indexes[disk_key]


def index_name(point_id: str, disk_key: str) -> str:
    return f"{POINTS}{point_id}/{disk_key}.idx"


def manifest_name(point_id: str) -> str:
    return f"{POINTS}{point_id}/{MANIFEST}"


class RemoteVault:
    """Chunks and points in a back end, read and written with one vault key (or none)."""

    def __init__(self, backend: Backend, key: bytes | None = None) -> None:
        self.backend = backend
        self.sealer = Sealer(key)
        self._checked = False
        self._check_lock = threading.Lock()

    @property
    def description(self) -> str:
        return self.backend.description

    # Configuration --------------------------------------------------------------------------------

    def open(self, *, create: bool = False) -> RemoteVault:
        """Check that the key fits this vault (writing vault.json first if `create` and it is new)."""
        with self._check_lock:
            if self._checked:
                return self
            try:
                config = json.loads(self.backend.get(CONFIG))
            except BlobNotFound:
                if not create:
                    self._checked = True  # an empty vault: nothing to read, nothing to mismatch
                    return self
                config = {
                    "format": VAULT_FORMAT,
                    "chunk_size": CHUNK_SIZE,
                    "encrypted": self.sealer.encrypted,
                    "key_check": self.sealer.key_check,
                }
                if not self.backend.put(CONFIG, json.dumps(config).encode()):
                    config = json.loads(self.backend.get(CONFIG))  # another writer created it first
            except ValueError as err:
                raise StoreError(f"{CONFIG} in {self.description} is unreadable: {err}") from err
            self._check_config(config)
            self._checked = True
            return self

    def _check_config(self, config: dict[str, Any]) -> None:
        if config.get("format") != VAULT_FORMAT or config.get("chunk_size") != CHUNK_SIZE:
            raise StoreError(f"{self.description} holds a vault of another format: {config}")
        if config.get("encrypted") and not self.sealer.encrypted:
            raise VaultKeyError(f"{self.description} is encrypted: enter its vault key to use it")
        if not config.get("encrypted") and self.sealer.encrypted:
            raise VaultKeyError(f"{self.description} is not encrypted, but a vault key was given")
        if config.get("encrypted") and config.get("key_check") != self.sealer.key_check:
            raise VaultKeyError(f"{self.description} was encrypted with another vault key")

    # Blobs ----------------------------------------------------------------------------------------

    def read_blob(self, name: str) -> bytes:
        """A whole blob, decrypted. SealError becomes CorruptPoint: the bytes are not what we wrote."""
        data = self.backend.get(name)
        try:
            return self.sealer.unseal(data, name)
        except SealError as err:
            raise CorruptPoint(str(err)) from err

    def write_blob(self, name: str, data: bytes, *, overwrite: bool) -> bool:
        return self.backend.put(name, self.sealer.seal(data, name), overwrite=overwrite)

    # Chunks ---------------------------------------------------------------------------------------

    def chunk_name(self, digest: bytes) -> str:
        return self.sealer.chunk_name(digest)

    def chunk_blobs(self) -> dict[str, BlobInfo]:
        """Every chunk blob in the vault, by name (one listing: 5,000 names a request on Azure)."""
        return {info.name: info for info in self.backend.list(CHUNKS)}

    def put_chunk(self, digest: bytes, chunk_file: bytes | memoryview, *, overwrite: bool = False) -> bool:
        """Upload a chunk file (header byte + payload, as in the local store) unless present."""
        name = self.chunk_name(digest)
        return self.backend.put(name, self.sealer.seal(chunk_file, name), overwrite=overwrite)

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        """The plaintext of one chunk; ChunkMissing if the vault lacks it, BlobArchived if it must
        be rehydrated first. Always checks the SHA-256 when `verify` (the default). A chunk that
        fails (does not unseal or decode, wrong hash) is quarantined, then ChunkCorrupt is raised."""
        payload = self._unsealed_chunk(digest)
        try:
            return decode_chunk(payload, digest, length, verify=verify)
        except ChunkCorrupt as err:
            raise self._quarantined_error(digest, str(err)) from err

    def read_chunk_file(self, digest: bytes) -> bytes:
        """The chunk file (header byte + payload, unsealed, as the local store keeps it), checked
        against `digest`: what repairs a quarantined local chunk. Errors as read_chunk."""
        payload = self._unsealed_chunk(digest)
        try:
            decode_chunk_file(payload, digest)
        except ChunkCorrupt as err:
            raise self._quarantined_error(digest, str(err)) from err
        return payload

    def _unsealed_chunk(self, digest: bytes) -> bytes:
        name = self.chunk_name(digest)
        try:
            blob = self.backend.get(name)
        except BlobNotFound as err:
            raise ChunkMissing(f"chunk {digest.hex()} is missing from {self.description}", digest) from err
        try:
            return self.sealer.unseal(blob, name)
        except SealError as err:
            raise self._quarantined_error(digest, str(err)) from err

    def _quarantined_error(self, digest: bytes, reason: str) -> ChunkCorrupt:
        try:
            self.quarantine_chunk(digest, reason)
        except BackendError as err:  # the damage is the news; a failed move must not hide it
            return ChunkCorrupt(f"chunk {digest.hex()} in {self.description} is corrupt ({reason}); {err}", digest)
        return ChunkCorrupt(
            f"chunk {digest.hex()} in {self.description} is corrupt ({reason}); moved to {BAD} so that the "
            "next replication uploads a good copy",
            digest,
        )

    def bad_name(self, digest: bytes) -> str:
        """Where quarantine_chunk keeps the damaged blob of `digest`."""
        return BAD + self.chunk_name(digest).removeprefix(CHUNKS)

    def quarantine_chunk(self, digest: bytes, reason: str) -> bool:
        """Copy the chunk's blob (as found) to bad/ with a sealed `.why` beside it, then delete it
        from chunks/: listings no longer show it, so the next replication of a point that needs it
        uploads a good copy. True if a blob was moved. The key is checked first (open()): a wrong
        key must fail as VaultKeyError, never quarantine good chunks."""
        self.open()
        name = self.chunk_name(digest)
        try:
            blob = self.backend.get(name)
        except BlobNotFound:
            return False
        bad = self.bad_name(digest)
        self.backend.put(bad, blob, overwrite=True)
        self.write_blob(
            bad + ".why", f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {reason}".encode(), overwrite=True
        )
        return self.backend.delete(name)

    # Points ---------------------------------------------------------------------------------------

    def list_points(self) -> list[str]:
        """Published points (those with a manifest), sorted."""
        suffix = "/" + MANIFEST
        return sorted(
            info.name[len(POINTS) : -len(suffix)] for info in self.backend.list(POINTS) if info.name.endswith(suffix)
        )

    def has_point(self, point_id: str) -> bool:
        return self.backend.exists(manifest_name(check_name("point id", point_id)))

    def open_point(self, point_id: str) -> RemotePoint:
        name = manifest_name(check_name("point id", point_id))
        try:
            data = self.read_blob(name)
        except BlobNotFound as err:
            raise PointNotFound(f"no recovery point {point_id} in {self.description}") from err
        return RemotePoint(point_id, self, Manifest.from_json(data, name=f"{name} in {self.description}"))

    def publish_point(self, point_id: str, manifest: Manifest, indexes: dict[str, bytes]) -> None:
        """Indexes first, the manifest last: the point appears only once it is whole. Overwrites
        what an interrupted attempt left (same content, maybe sealed with another nonce)."""
        for key, data in sorted(indexes.items()):
            self.write_blob(index_name(point_id, key), data, overwrite=True)
        self.write_blob(manifest_name(point_id), manifest.to_json(), overwrite=True)

    def delete_point(self, point_id: str) -> None:
        """Manifest first (the point is gone at once), then its other blobs; chunks wait for GC."""
        check_name("point id", point_id)
        if not self.backend.delete(manifest_name(point_id)):
            raise PointNotFound(f"no recovery point {point_id} in {self.description}")
        for info in list(self.backend.list(f"{POINTS}{point_id}/")):
            self.backend.delete(info.name)

    def iter_indexes(self) -> Iterator[tuple[str, str, DiskIndex]]:
        for point_id in self.list_points():
            point = self.open_point(point_id)
            for key in point.disk_keys:
                yield point_id, key, point.index(key)
