"""A self-healing store: a chunk that fails its check is moved aside (bad/), never reused, and written
again by the next backup, repaired from the other tier by reads and by repair_chunks, and never
uploaded by replication. Real files, a directory vault and Azurite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vault import (
    CS,
    DISK,
    CountingSource,
    assert_chunks_trustworthy,
    backup,
    index_of,
    overwrite,
    restored,
)
from tests.vault.engine_helpers import digest_of, replicated, restore_bytes
from vault.engine import (
    ChunkCorrupt,
    ChunkQuarantined,
    ChunkRepair,
    DiskBackup,
    FileSource,
    RemoteVault,
    Store,
    TieredStore,
    UploadLimits,
    backup_disk,
    collect_vault,
    generate_key,
    parse_key,
    repair_chunks,
    replicate_point,
    verify_point,
)
from vault.engine.blobs import Backend, DirectoryBackend
from vault.engine.format import decode_chunk_file
from vault.engine.repair import NO_GOOD_COPY

TEXT_CHUNK, RANDOM_CHUNK, SHORT_CHUNK = 2, 5, 6  # chunks of MIXED_LAYOUT: zstd, raw, raw and short


def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def flip_vault_byte(vault: RemoteVault, digest: bytes) -> None:
    name = vault.chunk_name(digest)
    blob = bytearray(vault.backend.get(name))
    blob[len(blob) // 2] ^= 0x40
    vault.backend.put(name, bytes(blob), overwrite=True)


def backup_with(store: Store, point_id: str, source, **options) -> tuple[DiskBackup, set[bytes]]:
    """A one-disk backup; returns its result and the digests its commit repaired."""
    with store.begin_point(point_id) as pending:
        result = backup_disk(pending, DISK, source, **options)
        pending.commit({"vm": "test-vm"})
    return result, pending.repaired


# The local store --------------------------------------------------------------------------------


@pytest.mark.parametrize("with_previous", [False, True], ids=["by-name", "through-previous-index"])
def test_a_corrupt_chunk_is_moved_aside_by_verify_and_written_again_by_the_next_backup(
    store: Store, mixed: tuple[Path, bytes], with_previous: bool
) -> None:
    path, data = mixed
    backup(store, "p1", path)
    bad = digest_of(store, "p1", TEXT_CHUNK)
    flip_byte(store.chunk_path(bad))

    [problem] = verify_point(store, "p1").problems
    assert (problem.digest, problem.reason) == (bad.hex(), "corrupt")
    assert not store.chunk_path(bad).exists()
    assert (store.bad_dir / bad.hex()).exists()  # the bytes are kept for forensics
    assert "does not decompress" in (store.bad_reason(bad) or "")  # when and why, beside the bytes
    assert store.bad_chunks() == {bad}
    # Checked again before any repair: still damaged, and said so as corruption, not a mere absence.
    with pytest.raises(ChunkQuarantined, match=bad.hex()):
        restore_bytes(store, "p1")

    previous = index_of(store, "p1") if with_previous else None
    with FileSource(path) as source:
        result, repaired = backup_with(store, "p2", source, previous=previous)

    assert (result.stats.chunks_new, result.stats.chunks_repaired) == (1, 1)
    assert repaired == {bad}
    assert store.bad_chunks() == set()
    assert verify_point(store, "p1").ok and verify_point(store, "p2").ok
    assert restored(store, "p1") == data
    assert_chunks_trustworthy(store)


def test_the_cbt_path_reads_a_quarantined_chunk_even_where_nothing_changed(
    store: Store, mixed: tuple[Path, bytes]
) -> None:
    path, data = mixed
    backup(store, "p1", path)
    bad = digest_of(store, "p1", TEXT_CHUNK)
    flip_byte(store.chunk_path(bad))
    assert not verify_point(store, "p1").ok
    changed = [(RANDOM_CHUNK * CS + 100, 4096)]  # CBT names only chunk 5, far from the bad chunk 2
    new_data = overwrite(path, data, changed)

    source = CountingSource(path)
    try:
        result, repaired = backup_with(store, "p2", source, previous=index_of(store, "p1"), changed_areas=changed)
    finally:
        source.close()

    assert result.stats.path == "cbt"
    assert sorted(set(source.offsets)) == [TEXT_CHUNK * CS, RANDOM_CHUNK * CS]
    assert result.stats.chunks_repaired == 1 and repaired == {bad}
    assert verify_point(store, "p1").ok and verify_point(store, "p2").ok
    assert restored(store, "p1") == data and restored(store, "p2") == new_data


def test_put_chunk_file_takes_only_bytes_that_match_the_digest(store: Store, mixed: tuple[Path, bytes]) -> None:
    path, _data = mixed
    backup(store, "p1", path)
    bad, other = digest_of(store, "p1", TEXT_CHUNK), digest_of(store, "p1", RANDOM_CHUNK)
    good_file = store.chunk_path(bad).read_bytes()
    assert store.quarantine_chunk(bad, "checked by hand")
    assert not store.quarantine_chunk(bad, "again: nothing left to move")

    with pytest.raises(ChunkCorrupt):
        store.put_chunk_file(bad, store.chunk_path(other).read_bytes())
    assert store.bad_chunks() == {bad} and not store.chunk_path(bad).exists()

    assert store.put_chunk_file(bad, good_file)
    assert not store.put_chunk_file(bad, good_file)  # a valid copy is there already
    assert store.bad_chunks() == set() and verify_point(store, "p1").ok
    assert (store.bad_dir / f"{bad.hex()}.repaired").exists()  # evidence kept until the GC's grace ends
    assert_chunks_trustworthy(store)


# Across tiers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("found_by", ["the-restore", "an-earlier-verify"])
def test_a_restore_meeting_a_corrupt_local_chunk_reads_the_vault_and_repairs_the_local_copy(
    store: Store, backend: Backend, mixed: tuple[Path, bytes], found_by: str
) -> None:
    path, data = mixed
    vault = replicated(store, backend, path)
    bad = digest_of(store, "p1", TEXT_CHUNK)
    flip_byte(store.chunk_path(bad))
    if found_by == "an-earlier-verify":
        assert not verify_point(store, "p1").ok  # quarantined: the chunk is now absent locally

    tiered = TieredStore(store, vault)
    assert restore_bytes(tiered, "p1") == data

    assert tiered.repairs == [ChunkRepair(bad.hex(), "local", vault.description)]
    assert tiered.vault_reads == 1
    assert store.bad_chunks() == set()
    assert verify_point(store, "p1").ok
    assert_chunks_trustworthy(store)


def test_a_corrupt_vault_chunk_is_uploaded_again_from_the_good_local_copy(
    store: Store, backend: Backend, mixed: tuple[Path, bytes]
) -> None:
    path, data = mixed
    vault = replicated(store, backend, path, parse_key(generate_key()))  # sealed blobs: damage shows as a SealError
    bad = digest_of(store, "p1", RANDOM_CHUNK)
    flip_vault_byte(vault, bad)

    tiered = TieredStore(store, vault, vault_first=True)
    assert restore_bytes(tiered, "p1") == data

    assert tiered.repairs == [ChunkRepair(bad.hex(), "vault", str(store.root))]
    assert backend.exists(vault.bad_name(bad))  # the damaged blob, kept aside
    assert verify_point(vault, "p1").ok
    assert verify_point(store, "p1").ok


def test_replication_checks_each_chunk_and_uploads_nothing_bad(
    store: Store, backend: Backend, mixed: tuple[Path, bytes]
) -> None:
    path, _data = mixed
    backup(store, "p1", path)
    bad = digest_of(store, "p1", SHORT_CHUNK)
    flip_byte(store.chunk_path(bad))
    vault = RemoteVault(backend)

    with pytest.raises(ChunkCorrupt, match=bad.hex()) as caught:
        replicate_point(store, vault, "p1", limits=UploadLimits(threads=2))

    assert caught.value.digest == bad
    assert vault.list_points() == []
    assert vault.chunk_name(bad) not in vault.chunk_blobs()
    for name in vault.chunk_blobs():  # whatever did arrive is whole
        decode_chunk_file(backend.get(name), bytes.fromhex(name.rsplit("/", 1)[1]))
    assert store.bad_chunks() == {bad} and not store.chunk_path(bad).exists()


def test_a_corrupt_vault_chunk_found_by_verify_is_moved_aside_in_the_vault(
    store: Store, backend: Backend, mixed: tuple[Path, bytes]
) -> None:
    path, _data = mixed
    vault = replicated(store, backend, path)
    bad = digest_of(store, "p1", TEXT_CHUNK)
    flip_vault_byte(vault, bad)

    [problem] = verify_point(vault, "p1").problems

    assert problem.digest == bad.hex()
    assert vault.chunk_name(bad) not in vault.chunk_blobs()  # so the next replication would upload it
    assert backend.exists(vault.bad_name(bad)) and backend.exists(vault.bad_name(bad) + ".why")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_repair_chunks_fixes_each_tier_from_the_other_and_lists_what_it_cannot(
    store: Store, tmp_path: Path, mixed: tuple[Path, bytes], encrypted: bool
) -> None:
    path, data = mixed
    backup(store, "p1", path)
    (tmp_path / "vault").mkdir()
    vault = RemoteVault(DirectoryBackend(tmp_path / "vault"), parse_key(generate_key()) if encrypted else None)
    replicate_point(store, vault, "p1")
    local_bad, vault_bad, both_bad = (digest_of(store, "p1", i) for i in (TEXT_CHUNK, RANDOM_CHUNK, SHORT_CHUNK))
    for digest in (local_bad, both_bad):
        flip_byte(store.chunk_path(digest))
    for digest in (vault_bad, both_bad):
        flip_vault_byte(vault, digest)
    assert len(verify_point(store, "p1").problems) == 2
    assert len(verify_point(vault, "p1").problems) == 2

    report = repair_chunks(store, vault, vault_bad=[vault_bad, both_bad])

    assert [note.digest for note in report.repaired_local] == [local_bad.hex()]
    assert [note.digest for note in report.repaired_vault] == [vault_bad.hex()]
    assert list(report.unrepairable) == [(both_bad.hex(), NO_GOOD_COPY)]
    assert [p.digest for p in verify_point(store, "p1").problems] == [both_bad.hex()]
    assert [p.digest for p in verify_point(vault, "p1").problems] == [both_bad.hex()]

    # As the sentence says: the next backup that reads those bytes brings the chunk back.
    backup(store, "p2", path)
    assert verify_point(store, "p1").ok and restored(store, "p1") == data


def test_vault_gc_keeps_quarantined_blobs_for_the_grace_period_and_never_counts_them_as_chunks(
    store: Store, tmp_path: Path, mixed: tuple[Path, bytes]
) -> None:
    path, _data = mixed
    backup(store, "p1", path)
    (tmp_path / "vault").mkdir()
    backend = DirectoryBackend(tmp_path / "vault")
    vault = RemoteVault(backend)
    replicate_point(store, vault, "p1")
    bad = digest_of(store, "p1", TEXT_CHUNK)
    flip_vault_byte(vault, bad)
    assert not verify_point(vault, "p1").ok
    assert repair_chunks(store, vault, vault_bad=[bad]).repaired_vault

    young = collect_vault(vault, grace_seconds=3600)
    assert (young.chunks_seen, young.chunks_swept, young.bad_swept) == (4, 0, 0)
    assert backend.exists(vault.bad_name(bad))

    old = collect_vault(vault, grace_seconds=0)  # its good copy is back: the evidence may go now
    assert (old.chunks_seen, old.chunks_swept, old.bad_swept) == (4, 0, 1)
    assert list(backend.list("bad/")) == []
    assert verify_point(vault, "p1").ok
