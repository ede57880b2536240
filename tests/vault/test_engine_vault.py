"""The vault tier: replication, resumption, restore from the vault alone, encryption, garbage collection
beside running backups, and tiering. Each test runs against a directory vault and against Azurite."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.children import START_UP_SECONDS, Child
from tests.vault import CS, DISK, MIB, MIXED_LAYOUT, backup, build_image, overwrite, sha256
from tests.vault.engine_helpers import restore_bytes
from tests.waiting import wait_until
from vault.engine import (
    ARCHIVE,
    HOT,
    BlobArchived,
    FileSource,
    NeedsRehydration,
    PointInUse,
    RemoteVault,
    Store,
    TieredStore,
    UploadLimits,
    VaultBusy,
    VaultKeyError,
    apply_tiering,
    backup_disk,
    check_readable,
    collect_local,
    collect_vault,
    generate_key,
    leases,
    parse_key,
    replicate_point,
    verify_point,
)
from vault.engine.blobs import DirectoryBackend
from vault.engine.replicate import RateLimit
from vault.engine.tiers import start_rehydration

ROOT = Path(__file__).resolve().parents[2]


def test_point_replicates_and_restores_from_the_vault_alone(store, backend, mixed, tmp_path):
    path, data = mixed
    backup(store, "p1", path)
    vault = RemoteVault(backend)

    stats = replicate_point(store, vault, "p1", limits=UploadLimits(threads=3))

    assert stats.chunks == stats.chunks_uploaded == 4  # the mixed image has 4 distinct non-zero chunks
    assert vault.list_points() == ["p1"]
    assert verify_point(vault, "p1").ok
    # The local store is lost: a new empty one, reading through to the vault.
    tiered = TieredStore(Store(tmp_path / "new-store"), RemoteVault(backend))
    assert sha256(restore_bytes(tiered, "p1")) == sha256(data)
    assert tiered.vault_reads == 4 and tiered.local_reads == 0


def test_second_point_uploads_only_new_chunks(store, backend, mixed):
    path, data = mixed
    backup(store, "p1", path)
    vault = RemoteVault(backend)
    replicate_point(store, vault, "p1")
    changed = overwrite(path, data, [(CS + 100, 4096)])
    backup(store, "p2", path, previous=store.open_point("p1").index(DISK))

    stats = replicate_point(store, vault, "p2")

    assert (stats.chunks_uploaded, stats.chunks_present) == (1, 3)
    assert 0 < stats.bytes_uploaded <= CS + 1
    assert sha256(restore_bytes(TieredStore(None, vault), "p2")) == sha256(changed)
    again = replicate_point(store, vault, "p2")
    assert again.already_replicated and again.bytes_uploaded == 0


def test_restore_mixes_local_and_vault_chunks(store, backend, mixed, tmp_path):
    path, data = mixed
    backup(store, "p1", path)
    vault = RemoteVault(backend)
    replicate_point(store, vault, "p1")
    victim = sorted(store.chunks_dir.rglob("*"))[-1]
    victim.unlink()  # one chunk lost locally (a bad sector, a careless cleanup)

    tiered = TieredStore(store, vault)
    assert sha256(restore_bytes(tiered, "p1")) == sha256(data)
    assert (tiered.local_reads, tiered.vault_reads) == (3, 1)


KILL_SCRIPT = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from vault.engine import RemoteVault, Store, UploadLimits, replicate_point
from vault.engine.blobs import DirectoryBackend

kind, where, store_root = sys.argv[2], sys.argv[3], sys.argv[4]
if kind == "directory":
    backend = DirectoryBackend(where)
else:
    from vault.engine.azure_blob import AzureBlobBackend
    backend = AzureBlobBackend.from_connection_string(os.environ["VAULT_CONN"], where)
real_put = backend.put
count = 0
def put(name, data, overwrite=False):
    global count
    done = real_put(name, data, overwrite=overwrite)
    if name.startswith("chunks/"):
        count += 1
        if count == 2:
            print("halfway", flush=True)
            time.sleep(600)
    return done
backend.put = put
replicate_point(Store(store_root), RemoteVault(backend), "p1", limits=UploadLimits(threads=1))
print("finished", flush=True)
"""


def test_replication_killed_halfway_resumes_without_resending(store, backend, mixed, tmp_path, request):
    path, data = mixed
    backup(store, "p1", path)
    if isinstance(backend, DirectoryBackend):
        args, env = ["directory", str(backend.root)], dict(os.environ)
    else:
        azurite = request.getfixturevalue("azurite")
        args, env = ["azure", backend.container], {**os.environ, "VAULT_CONN": azurite.connection_string()}
    with Child(KILL_SCRIPT, str(ROOT), *args, str(store.root), env=env) as child:
        child.wait_for("halfway", timeout=START_UP_SECONDS, what="it started and uploaded two chunks")
        child.kill()
    vault = RemoteVault(backend)
    assert vault.list_points() == []  # no manifest: the point is not in the vault

    stats = replicate_point(store, vault, "p1")

    assert (stats.chunks_present, stats.chunks_uploaded) == (2, 2)
    assert sha256(restore_bytes(TieredStore(None, vault), "p1")) == sha256(data)


def test_encrypted_vault_hides_digests_and_needs_its_key(store, backend, mixed):
    path, data = mixed
    backup(store, "p1", path)
    key = parse_key(generate_key())
    vault = RemoteVault(backend, key)
    replicate_point(store, vault, "p1")

    local_names = {p.name for p in store.chunks_dir.rglob("*") if p.is_file()}
    vault_names = {info.name.rsplit("/", 1)[-1] for info in backend.list("chunks/")}
    assert len(vault_names) == 4 and not vault_names & local_names  # no plaintext digest leaks
    text_chunk = data[2 * CS : 2 * CS + 4096]
    assert all(text_chunk[:64] not in backend.get(info.name) for info in backend.list(""))
    assert sha256(restore_bytes(TieredStore(None, RemoteVault(backend, key)), "p1")) == sha256(data)

    with pytest.raises(VaultKeyError, match="another vault key"):
        RemoteVault(backend, parse_key(generate_key())).open()
    with pytest.raises(VaultKeyError, match="enter its vault key"):
        RemoteVault(backend).open()


def test_key_text_is_checked():
    with pytest.raises(ValueError, match="starts with"):
        parse_key("hunter2")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_key("vmbk1:AAAA")
    assert len(parse_key(generate_key())) == 32


class GatedSource:
    """A source that stops after its first chunks until `gate` is set, to hold a backup mid-way."""

    def __init__(self, path: Path, gate: threading.Event, reached: threading.Event) -> None:
        self.inner = FileSource(path)
        self.size = self.inner.size
        self.gate, self.reached = gate, reached

    def readinto(self, offset: int, buffer: memoryview) -> int:
        if offset >= 2 * CS:
            self.reached.set()
            assert self.gate.wait(30)
        return self.inner.readinto(offset, buffer)


@pytest.mark.parametrize("first", ["backup", "gc"])
def test_gc_beside_a_running_backup_deletes_nothing_it_needs(store, tmp_path, first):
    # p0: data only it has (to be pruned); p1: the base of the running backup p2.
    old = tmp_path / "old.img"
    build_image(old, [("random", 3 * CS)], seed=7)
    backup(store, "p0", old)
    path = tmp_path / "disk.img"
    data = build_image(path, MIXED_LAYOUT)
    backup(store, "p1", path)
    # p2 = p1's disk plus, at its end, a chunk that only p0 holds: found in the store, reused.
    new_data = data + bytes(-len(data) % CS) + old.read_bytes()[:CS]
    path.write_bytes(new_data)
    shared = store.chunk_path(store.open_point("p0").index(DISK).digest(0))
    os.utime(shared, (1_000_000, 1_000_000))  # last used long ago, so the backup's touch shows
    gate, reached = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run_backup() -> None:
        try:
            with store.begin_point("p2", base="p1") as pending:
                previous = store.open_point("p1").index(DISK)
                backup_disk(pending, DISK, GatedSource(path, gate, reached), previous=previous, threads=1)
                pending.commit({})
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run_backup)
    worker.start()
    assert reached.wait(30)
    with pytest.raises(PointInUse):
        store.delete_point("p1")  # the running backup's base is pinned
    store.delete_point("p0")
    if first == "backup":
        gate.set()  # the backup now finds p0's first chunk in the store and touches it ...
        wait_until(lambda: shared.stat().st_mtime > 1_000_000, what="the backup found p0's first chunk")
        report = collect_local(store, grace_seconds=0)  # ... before the GC sweeps: it stays
        assert report.chunks_swept == 2
    else:
        report = collect_local(store, grace_seconds=0)  # all of p0 goes ...
        assert report.chunks_swept == 3
        gate.set()  # ... and the backup, finding that chunk gone, stores its own copy
    worker.join(30)

    assert not errors
    assert verify_point(store, "p2").ok
    assert sha256(restore_bytes(store, "p2")) == sha256(new_data)


def test_a_chunk_a_running_backup_found_is_kept_and_an_untouched_one_swept(store, tmp_path):
    path = tmp_path / "old.img"
    build_image(path, [("random", 2 * CS)], seed=5)
    backup(store, "p0", path)
    digests = sorted(store.open_point("p0").index(DISK).referenced())
    store.delete_point("p0")
    for digest in digests:
        os.utime(store.chunk_path(digest), (1_000_000, 1_000_000))  # last used long ago
    with store.begin_point("p1") as pending:
        assert pending.found_in_store(digests[0])  # what a backup does when it meets that data again

        report = collect_local(store, grace_seconds=0)

        assert (report.chunks_swept, report.chunks_kept_young) == (1, 1)
        assert store.has_chunk(digests[0]) and not store.has_chunk(digests[1])


def test_gc_dry_run_reports_without_deleting(store, mixed, tmp_path):
    path, _data = mixed
    backup(store, "p1", path)
    other = tmp_path / "other.img"
    build_image(other, [("random", 2 * CS)], seed=3)
    backup(store, "p2", other)
    store.delete_point("p2")
    before = sorted(store.chunks_dir.rglob("*"))

    dry = collect_local(store, grace_seconds=0, dry_run=True)
    young = collect_local(store, grace_seconds=3600)
    assert (dry.chunks_swept, young.chunks_swept, young.chunks_kept_young) == (2, 0, 2)
    assert sorted(store.chunks_dir.rglob("*")) == before

    real = collect_local(store, grace_seconds=0)
    assert real.chunks_swept == 2 and real.bytes_freed > 2 * MIB
    assert verify_point(store, "p1").ok


def test_vault_gc_sweeps_unreferenced_chunks_and_waits_for_replications(store, backend, mixed, tmp_path):
    path, data = mixed
    backup(store, "p1", path)
    other = tmp_path / "other.img"
    build_image(other, [("random", 2 * CS)], seed=3)
    backup(store, "p2", other)
    vault = RemoteVault(backend)
    replicate_point(store, vault, "p1")
    replicate_point(store, vault, "p2")
    vault.delete_point("p2")

    with leases.writing(backend), pytest.raises(VaultBusy, match="replication is running"):
        collect_vault(vault, grace_seconds=0)
    report = collect_vault(vault, grace_seconds=0)

    assert (report.points, report.chunks_swept) == (1, 2)
    assert len(list(backend.list("chunks/"))) == 4
    assert list(backend.list("locks/")) == []
    assert sha256(restore_bytes(TieredStore(None, vault), "p1")) == sha256(data)


def test_tiering_archives_only_chunks_no_newer_point_needs(store, azure_backend, mixed):
    path, data = mixed
    backup(store, "old", path)
    changed = overwrite(path, data, [(CS + 100, 4096)])
    backup(store, "new", path)
    vault = RemoteVault(azure_backend)
    replicate_point(store, vault, "old")
    replicate_point(store, vault, "new")

    report = apply_tiering(vault, ["old"], ARCHIVE)

    assert (report.chunks_moved, report.chunks_kept) == (1, 3)
    tiers = sorted(info.tier for info in azure_backend.list("chunks/"))
    assert tiers == [ARCHIVE, HOT, HOT, HOT, HOT]
    assert sha256(restore_bytes(TieredStore(None, vault), "new")) == sha256(changed)
    with pytest.raises(BlobArchived):
        restore_bytes(TieredStore(None, vault), "old")
    with pytest.raises(NeedsRehydration):  # a check starts nothing: the chunk stays archived
        check_readable(vault, "old")
    start_rehydration(vault, "old")  # Azurite rehydrates at once
    assert sha256(restore_bytes(TieredStore(None, vault), "old")) == sha256(data)


def test_rate_limit_spreads_uploads_over_time(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("vault.engine.replicate.time.sleep", slept.append)
    monkeypatch.setattr("vault.engine.replicate.time.monotonic", lambda: 0.0)
    limit = RateLimit(1_000_000)
    for _ in range(4):
        limit.take(1_000_000)
    # One second of burst, then each further megabyte waits a second (the fake clock stands still).
    assert slept == [1.0, 2.0, 3.0]
    RateLimit(None).take(10**12)  # unlimited never sleeps
    assert len(slept) == 3
