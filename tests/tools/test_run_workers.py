"""The workers `make run` starts: per kind, each on its own queues, counted by WORKERS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ConfigError, env_counts

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = {"backup": 2, "restore": 1, "maintenance": 1, "vault": 1, "verify": 2}


def test_by_default_backups_restores_maintenance_and_the_vault_each_have_workers(settings) -> None:
    assert settings.WORKERS == DEFAULT
    assert settings.WORKER_QUEUES == {
        "backup": ("backup",),
        "restore": ("restore",),
        "maintenance": ("maintenance", "default"),
        "vault": ("vault", "default"),
        "verify": ("verify",),
    }


def test_every_queue_has_a_worker_kind_and_no_kind_mixes_backups_with_housekeeping(settings) -> None:
    served = {queue for queues in settings.WORKER_QUEUES.values() for queue in queues}
    assert served == set(settings.RQ_QUEUES)
    for kind, queues in settings.WORKER_QUEUES.items():
        assert kind == "backup" or "backup" not in queues
        assert kind == "maintenance" or "maintenance" not in queues


def test_a_machine_names_only_the_kinds_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "backup=4, vault=1")
    assert env_counts("WORKERS", DEFAULT) == {"backup": 4, "restore": 0, "maintenance": 0, "vault": 1, "verify": 0}


@pytest.mark.parametrize("value", ["backup", "backup=two", "backups=2", "backup=-1", "backup=100"])
def test_a_bad_workers_value_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WORKERS", value)
    with pytest.raises(ConfigError, match="^WORKERS "):
        env_counts("WORKERS", DEFAULT)


def test_a_bad_workers_value_stops_every_process_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATA_DIR"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "DATA_DIR": str(tmp_path), "WORKERS": "backup=2,restores=1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Configuration error: WORKERS must look like backup=2,restore=1,maintenance=1,vault=1,verify=2 "
        "(kinds: backup, restore, maintenance, vault, verify), not 'restores=1'"
    ]
