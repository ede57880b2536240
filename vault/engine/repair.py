"""Repairing quarantined chunks from the other tier, in bulk (what `manage.py vault repair` runs).

The local store knows its bad chunks (`Store.bad_chunks`, one listing of bad/). The vault cannot list
its bad chunks by digest when it is encrypted (blob names are keyed hashes), so the caller passes
the digests it recorded as damaged in the vault (`vault_bad`). Every copy is checked against its
digest before it is written, so a repair never spreads damage; a chunk with no good copy in either
tier is listed with a sentence instead, because only a backup that reads those bytes again can
bring it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .blobs import BackendError, BlobArchived
from .errors import ChunkCorrupt, ChunkError, ChunkMissing, StoreError
from .remote import RemoteVault
from .store import Store

_NEXT_BACKUP = "the next backup that reads these bytes writes it again"
NO_GOOD_COPY = f"no good copy in either tier; {_NEXT_BACKUP}"


class ChunkNote(NamedTuple):
    """One chunk: its digest (hex) and a sentence about it. Unpacks as (digest, sentence)."""

    digest: str
    sentence: str


@dataclass
class RepairReport:
    """What `repair_chunks` did, chunk by chunk."""

    repaired_local: list[ChunkNote] = field(default_factory=list)  # local copy rewritten from the vault
    repaired_vault: list[ChunkNote] = field(default_factory=list)  # vault copy uploaded again from local
    unrepairable: list[ChunkNote] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unrepairable

    def summary(self) -> str:
        return (
            f"{len(self.repaired_local)} chunk(s) repaired in the local store, {len(self.repaired_vault)} in the "
            f"vault, {len(self.unrepairable)} cannot be repaired"
        )


def repair_chunks(store: Store, vault: RemoteVault | None, *, vault_bad: Iterable[bytes] = ()) -> RepairReport:
    """Repair every local bad chunk from a good vault copy, then upload a good local copy of every
    digest in `vault_bad` (chunks found corrupt or missing in the vault). Unrepairable ones are
    listed, never raised; BackendError/StoreError still propagate for a vault that cannot be reached."""
    report = RepairReport()
    vault_bad = set(vault_bad)
    if vault is not None:
        vault.open()  # a wrong key fails here as VaultKeyError, before anything is judged corrupt
    for digest in sorted(store.bad_chunks()):
        _repair_local(store, vault, digest, report, also_bad_in_vault=digest in vault_bad)
    if vault is not None:
        for digest in sorted(vault_bad):
            _repair_vault(store, vault, digest, report)
    return report


def _repair_local(
    store: Store, vault: RemoteVault | None, digest: bytes, report: RepairReport, *, also_bad_in_vault: bool
) -> None:
    if vault is None:
        report.unrepairable.append(ChunkNote(digest.hex(), f"no vault is configured; {_NEXT_BACKUP}"))
        return
    if also_bad_in_vault:
        report.unrepairable.append(ChunkNote(digest.hex(), NO_GOOD_COPY))
        return
    try:
        chunk_file = vault.read_chunk_file(digest)  # checked; a corrupt vault copy is quarantined there
    except (ChunkMissing, ChunkCorrupt):
        report.unrepairable.append(ChunkNote(digest.hex(), NO_GOOD_COPY))
        return
    except BlobArchived:
        report.unrepairable.append(
            ChunkNote(digest.hex(), "the vault's copy is in the Archive tier; rehydrate it, then repair again")
        )
        return
    store.put_chunk_file(digest, chunk_file)
    report.repaired_local.append(ChunkNote(digest.hex(), f"rewritten from the good copy in {vault.description}"))


def _repair_vault(store: Store, vault: RemoteVault, digest: bytes, report: RepairReport) -> None:
    if any(note.digest == digest.hex() for note in report.unrepairable):
        return  # bad in both tiers: listed once already
    try:
        chunk_file = store.read_chunk_file(digest)  # checked; a corrupt local copy is quarantined
    except ChunkError:
        report.unrepairable.append(ChunkNote(digest.hex(), NO_GOOD_COPY))
        return
    try:
        vault.put_chunk(digest, chunk_file, overwrite=True)
    except (BackendError, StoreError) as err:
        report.unrepairable.append(ChunkNote(digest.hex(), f"uploading the good local copy failed: {err}"))
        return
    report.repaired_vault.append(ChunkNote(digest.hex(), f"uploaded again from the good copy in {store.root}"))
