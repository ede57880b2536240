"""Helpers for the tests that run `make run` (tools/run.py) as a real process: its environment, starting
it, reading its output, logging in to it, and finding what it left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tools.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def make_run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without the test run's own servers and worker layout: `make run` starts its
    own, with its data under tmp_path, on a free port; `extra` is added."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DATA_DIR", "WORKERS"}}
    return {**env, "DATA_DIR": str(tmp_path / "data"), "PORT": str(free_port()), "PYTHONUNBUFFERED": "1", **extra}


def start_make_run(env: dict[str, str]) -> subprocess.Popen:
    """tools/run.py as `make run` starts it, in a process group of its own, its output on stdout (text)."""
    return subprocess.Popen(
        [sys.executable, "tools/run.py"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    """The first output line matching `pattern`; the test fails, showing the output, if none comes in time.
    (A line is read whole, so `timeout` is checked between lines.)"""
    assert proc.stdout is not None, "start the process with its output piped (start_make_run does)"
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


def log_in(base: str, password: str) -> requests.Session:
    """A session logged in to `make run`'s dashboard at `base` as its administrator, admin."""
    session = requests.Session()
    session.get(f"{base}/login/", timeout=10)
    response = session.post(
        f"{base}/login/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/login/"},
        timeout=10,
    )
    if response.url == f"{base}/account/password/":
        # The generated password is one-time: the first sign-in must choose one. The same one is chosen
        # again, so this test's later sign-ins (after a restart) still use the password make run printed.
        response = session.post(
            response.url,
            data={
                "old_password": password,
                "new_password1": password,
                "new_password2": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": response.url},
            timeout=10,
        )
    assert response.url in (f"{base}/", f"{base}/account/"), "login failed"
    return session


def processes_mentioning(*needles: str) -> list[str]:
    """The command lines of running processes (not this one, not zombies) that contain any of `needles`."""
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
