"""Vault markers: a replication is not held up by the marker of a garbage collection that was killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vault.engine import VaultBusy, leases
from vault.engine.blobs import DirectoryBackend


def _gc_marker(backend: DirectoryBackend, pid: int, host: str | None = None) -> None:
    body = {"host": host or leases.MACHINE, "pid": pid, "kind": "gc"}
    backend.put(f"{leases.LOCKS}gc-0123456789abcdef.json", json.dumps(body).encode(), overwrite=True)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def backend(tmp_path):
    (tmp_path / "vault").mkdir()
    return DirectoryBackend(tmp_path / "vault")


def test_a_fresh_marker_of_a_killed_gc_on_this_host_does_not_hold_up_a_replication(backend):
    _gc_marker(backend, _dead_pid())
    with leases.writing(backend, wait_seconds=0):
        pass  # went ahead at once, not after the marker aged ten minutes


def test_a_marker_of_a_running_gc_still_holds_up_a_replication(backend):
    _gc_marker(backend, os.getpid())  # a live process
    with pytest.raises(VaultBusy), leases.writing(backend, wait_seconds=0):
        pass


def test_a_marker_of_another_machine_is_trusted_until_it_ages(backend):
    _gc_marker(backend, _dead_pid(), host="another-machine")
    with pytest.raises(VaultBusy), leases.writing(backend, wait_seconds=0):
        pass


def test_a_machine_sharing_this_host_name_is_another_machine(backend, monkeypatch):
    # Two worker machines in containers or cloned VMs may share a host name; MACHINE_NAME tells them
    # apart, and a pid that is gone here says nothing about the other machine's GC.
    monkeypatch.setattr(leases, "MACHINE", "machine-a")
    _gc_marker(backend, _dead_pid(), host="machine-b")
    with pytest.raises(VaultBusy), leases.writing(backend, wait_seconds=0):
        pass
