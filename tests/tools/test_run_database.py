"""`make run` on PostgreSQL: it waits for the database to answer before migrating (after a power loss
PostgreSQL may come up after us), and says in one sentence when it never does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools.make_run import make_run_env, processes_mentioning, start_make_run, wait_for_line
from tests.waiting import wait_until
from tools.services import Postgres, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres_not_started_yet() -> Iterator[Postgres]:
    """A private PostgreSQL cluster with its port chosen, not running until the test starts it."""
    # In /tmp, not pytest's tmp_path: the server runs as the postgres user, who cannot enter that.
    postgres = Postgres(Path(tempfile.mkdtemp(prefix="vmb-late-pg-")), port=free_port())
    yield postgres
    postgres.stop()
    shutil.rmtree(postgres.directory, ignore_errors=True)


def test_make_run_waits_for_a_postgresql_that_starts_late_then_migrates(
    tmp_path: Path, postgres_not_started_yet: Postgres
) -> None:
    postgres = postgres_not_started_yet
    proc = start_make_run(make_run_env(tmp_path, DATABASE_URL=postgres.url("postgres")))
    try:
        wait_for_line(proc, "Redis keeps its queues in", 60)
        where = re.escape(f"127.0.0.1:{postgres.port}/postgres")
        wait_for_line(proc, rf"Waiting for the database at {where} to answer", 60)
        postgres.start()
        wait_for_line(proc, "Applying database migrations", 120)
        wait_for_line(proc, r"Created the administrator 'admin'", 300)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(120)
    assert proc.returncode == 0


def test_make_run_says_in_one_sentence_when_the_database_never_answers(tmp_path: Path) -> None:
    nobody = f"postgres://postgres@127.0.0.1:{free_port()}/vmbackup"
    env = make_run_env(tmp_path, DATABASE_URL=nobody, START_TIMEOUT="3")

    result = subprocess.run(
        [sys.executable, "tools/run.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert re.search(r"The database at 127\.0\.0\.1:\d+/vmbackup did not answer within 3 s \(.+\): start it, "
                     r"or fix DATABASE_URL\.", output), output  # fmt: skip
    wait_until(lambda: not processes_mentioning(env["DATA_DIR"]), what="the Redis it started is stopped")
