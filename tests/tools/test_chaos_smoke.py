"""`make chaos` kept from rotting: one worker kill mid-backup on its own private stack, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEAN = (
    "chaos: 1 scenarios, 1 runs, 0 points lost, 0 chunks lost, 0 jobs stuck, 0 snapshots left, "
    "0/0 detected, 0/0 repaired"
)
pytestmark = pytest.mark.own_world  # make test runs it beside the rest (tools/test.py)


def test_a_quick_chaos_run_prints_the_table_and_a_clean_closing_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.chaos", "--quick", "--only", "backup-kill", "--runs", "1", "--seed", "5",
         "--vault", "directory"],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    output = result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1] == CLEAN, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    assert re.search(r"scenario\s+\| runs \| points lost \| chunks lost \| jobs stuck \| snapshots left", result.stdout)
    assert re.search(r"^backup-kill\s+\|\s+1 \|\s+0 \|\s+0 \|\s+0 \|\s+0 \|", result.stdout, re.MULTILINE)
    assert "[chaos] seed 5" in result.stdout
