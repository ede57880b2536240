"""The point manifest as a typed `Manifest`: what the old code wrote reads back and is written again
byte for byte (locally and in the vault), and the engine's modules import one way."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.vault import DISK, backup
from vault.engine import CorruptPoint, Manifest, RemoteVault, replicate_point
from vault.engine.blobs import DirectoryBackend
from vault.engine.format import ManifestDisk

ENGINE = Path(__file__).resolve().parents[2] / "vault" / "engine"

# A manifest exactly as pending.py wrote it before the typed Manifest: a dict through
# json.dumps(indent=2, sort_keys=True).
OLD_SHAPE = {
    "format": 1,
    "point_id": "vm-42.2026-11-25T0300",
    "committed_at": "2026-11-25T03:00:07Z",
    "chunk_size": 4194304,
    "disks": {
        "scsi0:1": {"index": "scsi0:1.idx", "image_size": 8388608, "stats": {"chunks_total": 2, "path": "full"}},
        "scsi0:0": {"index": "scsi0:0.idx", "image_size": 12345, "stats": {"chunks_total": 1, "path": "cbt"}},
    },
    "meta": {"vm": "vm-42", "disks": [{"key": 2000, "read_path": "full"}], "replicated_at": None},
}


def old_bytes(document: dict[str, object]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


def test_a_manifest_in_the_old_shape_round_trips_byte_for_byte() -> None:
    manifest = Manifest.from_json(old_bytes(OLD_SHAPE))
    assert manifest.point_id == "vm-42.2026-11-25T0300" and manifest.committed_at == "2026-11-25T03:00:07Z"
    assert manifest.disks["scsi0:0"] == ManifestDisk("scsi0:0.idx", 12345, {"chunks_total": 1, "path": "cbt"})
    assert manifest.to_json() == old_bytes(OLD_SHAPE)


def test_a_bare_manifest_reads_and_gains_only_an_empty_meta() -> None:
    bare = old_bytes({"disks": {}})
    manifest = Manifest.from_json(bare)
    assert (manifest.meta, manifest.committed_at, manifest.point_id) == ({}, None, None)
    assert manifest.to_json() == old_bytes({"disks": {}, "meta": {}})


@pytest.mark.parametrize(
    "data", [b"{not json", b"[]", b'{"disks": []}', b'{"disks": {"d": {}}}', b'{"disks": {}, "meta": 3}']
)
def test_what_is_not_a_manifest_is_a_corrupt_point(data: bytes) -> None:
    with pytest.raises(CorruptPoint, match="manifest.json is unreadable"):
        Manifest.from_json(data)


def test_a_committed_point_and_its_vault_copy_carry_the_same_manifest(store, mixed, tmp_path) -> None:
    backup(store, "p1", mixed[0])
    local = store.open_point("p1")
    written = (store.points_dir / "p1" / "manifest.json").read_bytes()
    assert written == old_bytes(json.loads(written))  # the old encoding, key for key
    assert local.manifest.to_json() == written

    (tmp_path / "vault").mkdir()
    vault = RemoteVault(DirectoryBackend(tmp_path / "vault"))
    replicate_point(store, vault, "p1", meta={"replicated_at": "2026-11-25T04:00:00Z"})
    remote = vault.open_point("p1")
    assert remote.manifest == local.manifest.with_meta({"replicated_at": "2026-11-25T04:00:00Z"})
    assert remote.meta == {"vm": "test-vm", "replicated_at": "2026-11-25T04:00:00Z"}
    assert remote.disk_keys == local.disk_keys == [DISK]


def _engine_imports(module: Path) -> set[str]:
    """Engine modules `module` imports, anywhere in it (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_engine_modules_import_one_way() -> None:
    graph = {path.stem: _engine_imports(path) for path in ENGINE.glob("*.py") if path.stem != "__init__"}
    assert "backup" not in graph["pending"] | graph["store"]
    assert "store" not in graph["pending"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert cycles == [], f"engine modules in an import cycle: {cycles}"
