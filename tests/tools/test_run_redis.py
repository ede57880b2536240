"""The private Redis of `make run` (tools.run.start_redis, tools.services.Redis): it keeps queued jobs
across a restart, and it starts whatever an earlier crash left in its directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as RedisClient
from rq import Queue

from tests.waiting import wait_until
from tools.run import start_redis
from tools.services import Redis, process_is_running, terminate_processes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose redis-servers, however they were left, are gone after the test."""
    yield tmp_path
    terminate_processes(Redis(tmp_path).running_servers())


def client(redis: Redis) -> RedisClient:
    return RedisClient.from_url(redis.url())


@pytest.mark.parametrize("stop", ["stopped", "killed"])
def test_a_queued_job_survives_a_restart_of_the_redis_make_run_starts(redis_dir: Path, stop: str) -> None:
    redis = start_redis(redis_dir, timeout=30)
    Queue("backup", connection=client(redis)).enqueue("jobs.runner.execute", "run-1", job_id="survivor")
    if stop == "stopped":
        redis.stop()
    else:  # a power loss: nothing flushed on the way out, only what the append-only file already has
        redis.process.kill()
        redis.process.wait()

    again = start_redis(redis_dir, timeout=30)
    try:
        queue = Queue("backup", connection=client(again))
        assert queue.job_ids == ["survivor"]
        assert queue.fetch_job("survivor").args == ("run-1",)
        assert (redis_dir / "appendonlydir").is_dir()
    finally:
        again.stop()


def test_make_run_says_where_redis_keeps_its_queues(redis_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start_redis(redis_dir, timeout=30).stop()
    assert f"Redis keeps its queues in {redis_dir / 'appendonlydir'}" in capsys.readouterr().out


def test_the_test_suite_s_redis_keeps_nothing(redis_dir: Path) -> None:
    redis = Redis(redis_dir).start()
    try:
        assert client(redis).config_get("appendonly") == {"appendonly": "no"}
    finally:
        redis.stop()
    assert not (redis_dir / "appendonlydir").exists()


def test_a_stale_socket_and_a_pid_file_naming_a_dead_process_do_not_stop_start_up(redis_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX) as stale:  # bound, then closed: the file stays, nobody listens
        stale.bind(str(redis_dir / "redis.sock"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (redis_dir / "redis.pid").write_text(f"{dead.pid}\n")

    redis = Redis(redis_dir, persistent=True).start(timeout=30)
    try:
        assert client(redis).ping()
        assert (redis_dir / "redis.pid").read_text().strip() == str(redis.process.pid)
    finally:
        redis.stop()


def test_a_pid_file_naming_some_other_live_process_leaves_that_process_alone(redis_dir: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (redis_dir / "redis.pid").write_text(f"{bystander.pid}\n")  # the pid was reused since
        redis = Redis(redis_dir, persistent=True).start(timeout=30)
        redis.stop()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def start_redis_in_a_process_that_then_crashes(directory: Path) -> int:
    """A redis-server of `directory` that outlives its SIGKILLed parent (as one busy shutting down, or
    started without a parent-death signal, does); returns its pid."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; from pathlib import Path; from tools.services import Redis; "
         f"command = Redis(Path({str(directory)!r}), persistent=True).command(); "
         "print(subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL).pid, flush=True); "
         "sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    old = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    wait_until(lambda: (directory / "redis.pid").exists(), what="the old redis-server is up")
    return old


def test_a_redis_server_left_by_a_crashed_parent_is_replaced_and_the_new_one_keeps_answering(
    redis_dir: Path,
) -> None:
    old = start_redis_in_a_process_that_then_crashes(redis_dir)
    assert process_is_running(old)

    redis = Redis(redis_dir, persistent=True).start(timeout=30)
    try:
        old_was_stopped = not process_is_running(old)
        # Were the old server still there, it would unlink the new server's socket as it exits: clients
        # would get "Error 2 connecting to …/redis.sock", as after the power loss in issue 12.
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGTERM)
        wait_until(lambda: not process_is_running(old), what="the old redis-server is gone")
        assert client(redis).ping()
        assert old_was_stopped
    finally:
        redis.stop()
