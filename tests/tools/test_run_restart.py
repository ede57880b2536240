"""`make run` comes back after any kind of stop: a power loss (every process SIGKILLed at once, leaving
a stale redis.sock, redis.pid and run.lock) and a killed supervisor whose children are still exiting."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools.make_run import log_in, make_run_env, processes_mentioning, start_make_run, wait_for_line
from tests.waiting import wait_until
from tools.services import process_is_running

WORKERS = {
    "backup": "backup",
    "restore": "restore",
    "maintenance": "maintenance default",
    "vault": "vault default",
    "verify": "verify",
}
WORKERS_LINE = (
    r"Workers: backup ×2 \(backup\); restore ×1 \(restore\); maintenance ×1 \(maintenance, default\); "
    r"vault ×1 \(vault, default\); verify ×2 \(verify\)"
)
pytestmark = pytest.mark.own_world  # make test runs it beside the rest (tools/test.py)


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    return make_run_env(tmp_path)


@pytest.fixture
def make_run(run_env: dict[str, str]) -> Iterator:
    """Starts tools/run.py as `make run` does; whatever is still running at the end is killed."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = start_make_run(run_env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            power_loss(proc)


def process_tree(root: int) -> set[int]:
    """`root` and all its descendants."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def power_loss(proc: subprocess.Popen) -> None:
    """Every process of the run stops at the same instant, none reacting to another's death."""
    frozen: set[int] = set()
    while new := process_tree(proc.pid) - frozen:  # frozen processes cannot fork: the tree stops growing
        for pid in new:
            os.kill(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(process_is_running(pid) for pid in frozen), what="every process of the run is gone")


def dashboard_works(proc: subprocess.Popen, password: str) -> None:
    base = wait_for_line(proc, r"Dashboard: (http://\S+)/", 240).group(1)
    session = log_in(base, password)
    for page in ["/", "/jobs/", "/settings/"]:
        assert session.get(f"{base}{page}", timeout=30).status_code == 200, page


def test_make_run_comes_back_after_a_power_loss_and_after_its_supervisor_is_killed(
    make_run, run_env: dict[str, str]
) -> None:
    data_dir = Path(run_env["DATA_DIR"])
    first = make_run()
    password = wait_for_line(first, r"administrator 'admin' with password (\S+)", 120).group(1)
    wait_for_line(first, WORKERS_LINE, 240)
    dashboard_works(first, password)
    for kind, queues in WORKERS.items():
        for number in (1, 2) if kind == "backup" else (1,):
            name = f"vmbackup-{first.pid}-{kind}-{number}"
            assert [line for line in processes_mentioning(name) if f"rqworker {queues} --name {name} " in line], name

    power_loss(first)
    assert {"redis.sock", "redis.pid", "run.lock"} <= {path.name for path in data_dir.iterdir()}

    second = make_run()
    wait_for_line(second, r"Log in with your administrator account", 120)
    dashboard_works(second, password)

    # kill -9 of make run: the supervisor dies, its children get SIGTERM and are still exiting
    # (a web server holding the port, a Redis about to unlink its socket) when the next run starts.
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    third = make_run()
    dashboard_works(third, password)

    os.killpg(third.pid, signal.SIGINT)
    assert third.wait(120) == 0
    workers = [f"vmbackup-{run.pid}-" for run in (first, second, third)]
    wait_until(
        lambda: not processes_mentioning(run_env["DATA_DIR"], f"127.0.0.1:{run_env['PORT']}", *workers),
        what="nothing of the three runs is left",
    )
