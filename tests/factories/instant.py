"""Instant recovery tests' settings: a folder ganesha can export and a free NFS port."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.services import free_port


@contextmanager
def instant_dir(settings: Any) -> Iterator[Path]:
    """settings.INSTANT_DIR in a fresh folder under /tmp (ganesha exports only paths of letters, digits
    and ._/+-: no pytest "test_name0" folders) and INSTANT_NFS_PORT free; the folder is removed
    afterwards unless something is still mounted in it (left for a look at a failed test)."""
    directory = Path(tempfile.mkdtemp(prefix="vmb-instant-"))
    settings.INSTANT_DIR = directory
    settings.INSTANT_NFS_PORT = free_port()
    try:
        yield directory
    finally:
        with open("/proc/mounts") as mounts:
            mounted = f" {directory}/" in mounts.read()
        if not mounted:
            shutil.rmtree(directory, ignore_errors=True)
