"""`make run`'s supervisor (tools/run.py), started for real on a fresh data directory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.make_run import log_in, make_run_env, processes_mentioning, start_make_run, wait_for_line
from tests.waiting import wait_until
from tools.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["/", "/inventory/", "/protection/", "/recovery/", "/jobs/", "/vault/", "/settings/"]
pytestmark = pytest.mark.own_world  # make test runs it beside the rest (tools/test.py)


@pytest.fixture
def run_env(tmp_path):
    return make_run_env(tmp_path)


def test_make_run_starts_everything_with_the_demo_vcenter_and_ctrl_c_stops_it_all(run_env):
    proc = start_make_run(run_env)
    try:
        password = wait_for_line(proc, r"administrator 'admin' with password (\S+)", 60).group(1)
        base = wait_for_line(proc, r"Dashboard: (http://\S+)/", 180).group(1)
        session = log_in(base, password)
        for page in PAGES:
            assert session.get(f"{base}{page}", timeout=10).status_code == 200, page
        assert "Demo vCenter (simulator)" in session.get(f"{base}/settings/", timeout=10).text

        second = subprocess.run(
            [sys.executable, "tools/run.py"], cwd=ROOT, env={**run_env, "PORT": str(free_port())},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert "Already running" in second.stdout
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(90)
    assert proc.returncode == 0

    def leftovers() -> list[str]:
        return processes_mentioning(run_env["DATA_DIR"], f"127.0.0.1:{run_env['PORT']}", f"vmbackup-{proc.pid}-")

    # Grandchildren (gunicorn's and rqworker's own children) may outlive their parents for a moment.
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not leftovers(), timeout=10, what="no process of make run is left")
    assert leftovers() == []  # names the ones left, if any
