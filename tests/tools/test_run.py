"""`make run`'s supervisor (tools/run.py), started for real on a fresh data directory."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.waiting import wait_until
from tools.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["/", "/inventory/", "/protection/", "/recovery/", "/jobs/", "/vault/", "/settings/"]


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "zombie" not in state and any(needle in cmdline for needle in needles):
            found.append(cmdline)
    return found


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    pytest.fail(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


@pytest.fixture
def run_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DATA_DIR"}}
    return {**env, "DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}


def log_in(base: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/login/", timeout=10)
    response = session.post(
        f"{base}/login/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/login/"},
        timeout=10,
    )
    assert response.url == f"{base}/", "login failed"
    return session


def test_make_run_starts_everything_with_the_demo_vcenter_and_ctrl_c_stops_it_all(run_env):
    proc = subprocess.Popen(
        [sys.executable, "tools/run.py"], cwd=ROOT, env=run_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
    )  # fmt: skip
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
