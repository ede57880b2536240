"""Fixtures shared by the vault engine tests (tests/vault/test_engine_*.py): a fresh local store and
the mixed test image, and the vault back ends each vault test runs against."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vault import MIXED_LAYOUT, build_image
from vault.engine import Store
from vault.engine.blobs import Backend, DirectoryBackend


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, bytes]:
    """MIXED_LAYOUT written to disk.img: its path and its bytes."""
    path = tmp_path / "disk.img"
    return path, build_image(path, MIXED_LAYOUT)


@pytest.fixture(params=["directory", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A directory vault, then Azurite: each test using it runs against both."""
    if request.param == "directory":
        (tmp_path / "vault").mkdir()
        return DirectoryBackend(tmp_path / "vault")
    backend: Backend = request.getfixturevalue("azure_backend")
    return backend
