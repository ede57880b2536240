"""A point a guest could not read whole is refused before anything is mounted, with one sentence:
its chunks archived in the vault (Azurite's Archive tier), missing, or the point unknown. A point
only the vault holds, its chunks online, is served from the vault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.instant.conftest import POINT, ROOT, serve_command, sha256, start_serving
from tools.services import Azurite
from vault import engine
from vault.engine.azure_blob import AzureBlobBackend
from vault.engine.blobs import ARCHIVE


def refused(store_dir: Path, tmp_path: Path, *extra: str, point: str = POINT) -> str:
    """Run the server; it must exit 2 with one line on stderr and leave nothing mounted."""
    mount = tmp_path / "mnt"
    mount.mkdir(exist_ok=True)
    command = serve_command(store_dir, mount, tmp_path / "overlay", *extra, point=point)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 2, done.stderr.decode()
    assert not os.path.ismount(mount)
    message = done.stderr.decode().strip()
    assert len(message.splitlines()) == 1, message
    return message


def vault_config(tmp_path: Path, azurite: Azurite, container: str) -> Path:
    path = tmp_path / "vault.json"
    document = {"kind": "azure", "connection_string": azurite.connection_string(), "container": container}
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def test_a_point_only_the_vault_holds_is_served_then_refused_once_archived(
    tmp_path: Path, store_dir: Path, images: dict[str, Path], azurite: Azurite, azure_backend: AzureBlobBackend
) -> None:
    vault = engine.RemoteVault(azure_backend)
    engine.replicate_point(engine.Store(store_dir), vault, POINT)
    shutil.rmtree(store_dir)  # the server's disk is gone: only the vault holds the point
    engine.Store(store_dir)
    config = vault_config(tmp_path, azurite, azure_backend.container)

    # The product hands the vault's settings over standard input: its secret never lands in a file.
    secret = config.read_bytes()
    served = start_serving(store_dir, tmp_path / "mnt", tmp_path / "overlay", "--vault-config", "-", stdin=secret)
    try:
        assert sha256(served.flat("win-01_1")) == sha256(images["2001"])
    finally:
        served.stop()

    engine.apply_tiering(vault, [POINT], ARCHIVE)
    message = refused(store_dir, tmp_path, "--vault-config", str(config))
    assert "in the vault's Archive tier" in message
    assert "rehydrate the point first" in message and "nothing was mounted" in message


def test_a_point_missing_a_chunk_is_refused(tmp_path: Path, store_dir: Path) -> None:
    store = engine.Store(store_dir)
    index = store.open_point(POINT).index("2000")
    digest = next(d for i in range(len(index)) if (d := index.digest(i)) is not None)
    store.chunk_path(digest).unlink()
    message = refused(store_dir, tmp_path)
    assert message == (
        f"1 chunk(s) of recovery point {POINT} are missing from the local store and no vault is configured: "
        "the point cannot be served."
    )


def test_an_unknown_point_is_refused(tmp_path: Path, store_dir: Path) -> None:
    message = refused(store_dir, tmp_path, point="no-such-point")
    assert message == "Recovery point no-such-point is not in the local store, so there is nothing to serve."


def test_a_vault_configuration_others_can_read_is_refused(
    tmp_path: Path, store_dir: Path, azurite: Azurite, azure_backend: AzureBlobBackend
) -> None:
    config = vault_config(tmp_path, azurite, azure_backend.container)
    config.chmod(0o644)
    message = refused(store_dir, tmp_path, "--vault-config", str(config))
    assert message == f"{config} may hold the vault's secret but others can read it: chmod 600 it."
