"""Worker "machines" on this host: for `make bench-scale` and the two-machine test.

A machine is what README "Workers on several machines" asks an installation to run on each worker
host: RQ workers (`jobs.worker.CleaningWorker`, per kind on the queues `make run` gives that kind) and
RQ's cron scheduler (`rqcron config.cron`, as `make run` starts it), in a process tree of their own
(one process group; the work horses, which RQ forks into sessions of their own, are found as the
workers' children), with a DATA_DIR of its own and its own MACHINE_NAME, and sharing with the other
machines only what the README says must be shared: DATABASE_URL, REDIS_URL, STORE_DIR, SECRET_KEY and
FIELD_ENCRYPTION_KEY (given as files, as the README tells an operator to copy them).

    python -m tools.machines tick --slot-time ISO --go EPOCH

runs the scheduler's tick for that moment on the machine whose environment it is started in, once
the wall clock reaches EPOCH: two machines started together tick within a millisecond of each other,
which is what two schedulers racing for one slot look like.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.chaos.stack import WORKER_CLASS, children_of, kill_quietly, wait_until  # noqa: E402
from tools.services import child_process_options  # noqa: E402

# Per machine: backups and vault jobs (as the issue asks), and the maintenance worker that runs what
# each machine's scheduler queues (tick, reaper, alerts) and the start-up jobs.
LAYOUT = {"backup": 2, "vault": 1, "maintenance": 1}


def shared_environment(*, store_dir: Path, secrets_dir: Path, max_concurrent_backups: int) -> dict[str, str]:
    """What every machine shares, on top of this process's environment (DATABASE_URL, REDIS_URL and
    DJANGO_SETTINGS_MODULE, set by whoever started the servers): the store and the two keys."""
    return {
        **os.environ,
        "STORE_DIR": str(store_dir),
        "SECRET_KEY_FILE": str(secrets_dir / "secret_key"),
        "FIELD_ENCRYPTION_KEY_FILE": str(secrets_dir / "field_key"),
        "MAX_CONCURRENT_BACKUPS": str(max_concurrent_backups),
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class Machine:
    """One worker machine: its processes, its DATA_DIR and its name (MACHINE_NAME)."""

    name: str
    root: Path  # DATA_DIR is root/data; logs go to root/*.log
    shared: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    worker_names: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def env(self) -> dict[str, str]:
        env = {**self.shared, "DATA_DIR": str(self.data_dir), "MACHINE_NAME": self.name}
        for key in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY"):  # the files say it; an inherited value must not
            env.pop(key, None)
        return env

    @property
    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for _, p in self.processes)

    def spawn(self, label: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start a process in this machine's process group (the first one leads it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        leader = self.processes[0][1].pid if self.processes else 0
        options = {**child_process_options(), "process_group": leader}
        with open(self.root / f"{label}.log", "ab") as log:
            process = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                **options,
            )  # fmt: skip
        self.processes.append((label, process))
        return process

    def start(self, layout: dict[str, int] | None = None, *, cron: bool = True) -> None:
        """Workers per kind on that kind's queues (settings.WORKER_QUEUES, as `make run`), and the
        scheduler; returns once RQ lists every worker (each has reaped and queued its start-up jobs)."""
        from django.conf import settings

        for kind, count in (layout or LAYOUT).items():
            for number in range(1, count + 1):
                name = f"{self.name}-{kind}-{number}"
                self.worker_names.append(name)
                self.spawn(name, [sys.executable, "manage.py", "rqworker", *settings.WORKER_QUEUES[kind],
                                  "--worker-class", WORKER_CLASS, "--name", name])  # fmt: skip
        if cron:
            self.spawn(f"{self.name}-scheduler", [sys.executable, "manage.py", "rqcron", "config.cron"])

    def wait_ready(self, timeout: float = 120.0) -> None:
        import django_rq
        from rq import Worker as RqWorker

        def registered() -> bool:
            if not self.alive:
                dead = [label for label, p in self.processes if p.poll() is not None]
                raise RuntimeError(f"{self.name}: {', '.join(dead)} exited while starting (logs in {self.root})")
            names = {w.name for w in RqWorker.all(connection=django_rq.get_connection())}
            return set(self.worker_names) <= names

        wait_until(registered, timeout, f"{self.name}'s workers' start", poll=0.2)

    def tick(self, slot_time: str, go: float) -> subprocess.Popen[bytes]:
        """The scheduler's tick at `slot_time`, run on this machine at wall-clock time `go`."""
        return subprocess.Popen(
            [sys.executable, "-m", "tools.machines", "tick", "--slot-time", slot_time, "--go", repr(go)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def horses(self) -> list[int]:
        return [child for _, p in self.processes if p.poll() is None for child in children_of(p.pid)]

    def kill(self) -> None:
        """A power loss: every process of the machine stopped at once (SIGSTOP to its group and its
        work horses, so none of them sees the others die and reacts), then SIGKILLed."""
        group = self.processes[0][1].pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGSTOP)
        for pid in self.horses():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pid in self.horses():  # the workers are stopped: no horse is forked meanwhile
            kill_quietly(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        for _, process in self.processes:
            process.wait()

    def stop(self) -> None:
        """A warm stop (SIGTERM), killing what has not stopped in 30 s."""
        for _, process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 30
        for _, process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for pid in children_of(process.pid):
                    kill_quietly(pid)
                process.kill()
                process.wait()


def tick_main(slot_time: str, go: float) -> int:
    import django

    django.setup()
    from datetime import datetime

    from protection.scheduling import tick

    moment = datetime.fromisoformat(slot_time)
    while time.time() < go:
        time.sleep(min(0.001, max(0.0, go - time.time())))
    print(tick(now=moment), flush=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.machines", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tick = commands.add_parser("tick", help="run the scheduler's tick for a given moment at a given time")
    tick.add_argument("--slot-time", required=True, help="the moment the tick believes it is (ISO 8601)")
    tick.add_argument("--go", type=float, required=True, help="wall-clock time (epoch seconds) to tick at")
    args = parser.parse_args(argv)
    return tick_main(args.slot_time, args.go)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
