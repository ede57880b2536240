"""manage.py on a database that was never migrated: one sentence saying what to run, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config.env import parse_database_url

ROOT = Path(__file__).resolve().parents[2]
HINT = "has no tables yet: run `python manage.py migrate` (make run does it for you)."


def manage(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATA_DIR"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env={**base, "DATA_DIR": str(data_dir), **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("command", [["vault", "status"], ["vms"], ["points"], ["audit"]], ids=" ".join)
def test_a_command_on_a_never_migrated_sqlite_database_says_to_migrate(tmp_path: Path, command: list[str]) -> None:
    result = manage(tmp_path, *command)

    assert result.returncode != 0
    assert result.stderr.strip() == f"The database at {tmp_path / 'vmbackup.sqlite3'} {HINT}"
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def empty_postgres_database() -> Iterator[str]:
    """A new, empty database on the suite's PostgreSQL server; its URL."""
    server = parse_database_url("DATABASE_URL", os.environ["DATABASE_URL"])
    name = f"vmb_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = dict(host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres")
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{server.user}@{server.host}:{server.port}/{name}"
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_command_on_a_never_migrated_postgresql_database_says_to_migrate(
    tmp_path: Path, empty_postgres_database: str
) -> None:
    result = manage(tmp_path, "vault", "status", DATABASE_URL=empty_postgres_database)

    assert result.returncode != 0
    where = empty_postgres_database.removeprefix("postgres://postgres@")
    assert result.stderr.strip() == f"The database at {where} {HINT}"
    assert "Traceback" not in result.stdout + result.stderr


def test_a_migrated_database_runs_commands_as_before(tmp_path: Path) -> None:
    assert manage(tmp_path, "migrate", "--verbosity", "0").returncode == 0

    result = manage(tmp_path, "vms")

    assert result.returncode == 0, result.stderr
    assert "migrate" not in result.stderr
