"""Instant recoveries share one read cache of vault chunks (each point has its own server process): a
chunk the local store lacks is fetched from the vault once and then read by every other server from
the shared folder; a damaged cached chunk is dropped and fetched again; the folder is trimmed to its
size, least recently read first."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from instant.view.shared_cache import trim
from tests.instant.conftest import POINT, Served, sha256, start_serving
from tests.waiting import wait_until
from vault import engine


def serve_from_vault(store_dir: Path, tmp_path: Path, name: str, vault: Path, cache: Path) -> Served:
    config = tmp_path / "vault.json"
    config.write_text(json.dumps({"kind": "directory", "directory": str(vault)}))
    config.chmod(0o600)
    return start_serving(
        store_dir, tmp_path / name / "mnt", tmp_path / name / "overlay",
        "--vault-config", str(config), "--shared-cache", str(cache), "--status-every", "0.2",
    )  # fmt: skip


def read_all_then_stop(served: Served) -> tuple[str, dict[str, int]]:
    digest = sha256(served.flat("win-01_1"))

    def counted() -> dict[str, int] | None:
        status = json.loads((served.overlay / "status.json").read_text())
        return status if status["bytes_read"] > 0 else None

    status = wait_until(counted, what="status.json counts the reads")
    time.sleep(0.5)  # one more status write after the last read
    status = json.loads((served.overlay / "status.json").read_text())
    served.stop()
    return digest, status


def vault_only_point(store_dir: Path, tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    vault.mkdir()
    engine.replicate_point(engine.Store(store_dir), engine.RemoteVault(engine.blobs.DirectoryBackend(vault)), POINT)
    shutil.rmtree(store_dir)
    engine.Store(store_dir)  # the local store no longer has the point's chunks
    return vault


def test_a_second_recovery_reads_the_vault_chunks_the_first_one_fetched_from_the_shared_cache(
    tmp_path: Path, store_dir: Path, images: dict[str, Path]
) -> None:
    vault, cache = vault_only_point(store_dir, tmp_path), tmp_path / "cache"
    expected = sha256(images["2001"])

    first, first_status = read_all_then_stop(serve_from_vault(store_dir, tmp_path, "a", vault, cache))
    second, second_status = read_all_then_stop(serve_from_vault(store_dir, tmp_path, "b", vault, cache))

    assert first == second == expected
    assert first_status["vault_reads"] > 0 and first_status["shared_cache_reads"] == 0
    assert second_status["vault_reads"] == 0 and second_status["shared_cache_reads"] >= 1
    assert oct(cache.stat().st_mode & 0o777) == "0o700"


def test_a_damaged_cached_chunk_is_fetched_from_the_vault_again(
    tmp_path: Path, store_dir: Path, images: dict[str, Path]
) -> None:
    vault, cache = vault_only_point(store_dir, tmp_path), tmp_path / "cache"
    read_all_then_stop(serve_from_vault(store_dir, tmp_path, "a", vault, cache))
    damaged = sorted(cache.iterdir())[0]
    damaged.write_bytes(b"\x00" + os.urandom(100))

    digest, status = read_all_then_stop(serve_from_vault(store_dir, tmp_path, "b", vault, cache))

    assert digest == sha256(images["2001"])
    assert status["vault_reads"] >= 1  # (two FUSE threads missing the same chunk at once both fetch it)
    engine.format.decode_chunk_file(damaged.read_bytes(), bytes.fromhex(damaged.name))  # good again


def test_trimming_removes_the_least_recently_read_chunks_first(tmp_path: Path) -> None:
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - age * 60, time.time() - age * 60))
    (tmp_path / ".half-written").write_bytes(b"x")
    os.utime(tmp_path / ".half-written", (time.time() - 7200, time.time() - 7200))

    assert trim(tmp_path, 2000) == 1000

    assert sorted(p.name for p in tmp_path.iterdir()) == ["middle", "newest"]
