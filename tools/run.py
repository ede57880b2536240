"""`make run`: start everything in dependency order, each part once what it needs answers, and supervise.

In this order, each waiting for the one before to answer: processes a crashed earlier run of this
DATA_DIR left behind are stopped; a private Redis (unless REDIS_URL is set) that keeps its queues in
an append-only file; the database (PostgreSQL may still be starting), then migrations and an
administrator; the vCenter simulator with a demo inventory (when no real vCenter is configured); then
the RQ workers (per queue, see WORKERS), RQ's cron scheduler, the inventory watcher, the instant
recovery supervisor (instant.supervisor) and gunicorn.
Ctrl-C (or SIGTERM) stops all of them; if one of them dies, the others are stopped too, so nothing is
left running half-way.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.services import (  # noqa: E402
    Redis,
    ServiceError,
    child_process_options,
    process_environment,
    processes_where,
    terminate_processes,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ADMIN_NAME = "admin"
# Set in the environment of everything `make run` starts (children inherit it, grandchildren too), so
# the next run finds what a killed run left behind, whatever became of its parent.
RUN_MARKER = "VMBACKUP_RUN_DATA_DIR"
WORKER_CLASS = "jobs.worker.CleaningWorker"


class StartError(Exception):
    """A part `make run` needs did not answer in time; the message says which and what to do."""


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _AnswerNotRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer (to https:// with SECURE_COOKIES=true: nothing listens there)


_NOT_FOLLOWING_REDIRECTS = urllib.request.build_opener(_AnswerNotRedirect)


def web_server_answers(port: int, timeout: float) -> bool:
    """True once the web server answers an HTTP request (any status) within `timeout` seconds.

    An open port is not enough: gunicorn listens before its workers have loaded Django, and on a busy
    machine the first page would then take longer than a browser (or a test) waits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with _NOT_FOLLOWING_REDIRECTS.open(f"http://127.0.0.1:{port}/login/", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # an error page is an answer too
        except OSError:
            time.sleep(0.2)  # not listening yet, or still loading: ask again
    return False


class Supervisor:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        self.watching = False

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, **child_process_options())
        self.children.append((name, proc))
        return proc

    def manage(self, name: str, *args: str) -> subprocess.Popen:
        return self.spawn(name, [sys.executable, "manage.py", *args])

    def watch(self) -> int:
        self.watching = True
        parent = os.getppid()
        while not self.stopping:
            if os.getppid() != parent:
                say("make was stopped; stopping everything.")
                return 0
            for name, proc in self.children:
                if proc.poll() is not None:
                    say(f"{name} exited with code {proc.returncode}; stopping everything.")
                    return 1
            time.sleep(0.5)
        return 0

    def stop_all(self) -> None:
        """Stop children newest first (web server before workers before the simulator).

        A first SIGTERM lets an RQ worker finish its job; a second one makes it stop the job
        (the job's cleanup runs, and the row is marked by the orphan reaper if it cannot).
        """
        self.stopping = True
        for name, proc in reversed(self.children):
            for attempt in range(3):
                if proc.poll() is not None:
                    break
                if attempt < 2:
                    proc.terminate()
                else:
                    say(f"{name} did not stop in time; killing it.")
                    proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    continue


def ensure_admin(data_dir: Path) -> None:
    """Create the administrator `admin` with a one-time password when no administrator exists. An
    existing account's password is never reset: with no active administrator and `admin` taken, it
    says how to make one."""
    from django.contrib.auth import get_user_model

    from accounts.actions import create_user
    from accounts.roles import BACKUP_ADMIN

    User = get_user_model()
    if User.objects.filter(groups__name=BACKUP_ADMIN, is_active=True).exists():
        say("Log in with your administrator account.")
        return
    if User.objects.filter(username__iexact=ADMIN_NAME).exists():
        say(f"No active administrator, and the account {ADMIN_NAME!r} exists: its password is left as it is.")
        say("Make one with: .venv/bin/python manage.py user add NAME --role administrator")
        say(f"(or: manage.py user enable {ADMIN_NAME}; manage.py user role {ADMIN_NAME} administrator)")
        return
    created = create_user("make run", ADMIN_NAME, roles=[BACKUP_ADMIN])
    password = created.one_time_password
    password_file = data_dir / "initial-admin-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{password}\n")
    say(f"Created the administrator {ADMIN_NAME!r} with password {password}")
    say(f"(also kept in {password_file}; you choose your own at the first sign-in)")


def hold_lock(lock_path: Path) -> IO[str] | None:
    """The open, locked run.lock; None (after saying so) when another run of this DATA_DIR holds it.

    flock dies with its holder, so whatever a killed run left in the file never blocks a new run.
    """
    lock = open(lock_path, "a+")  # noqa: SIM115  (held for the life of the process)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        say(f"Already running for DATA_DIR={lock_path.parent} ({lock.read().strip()}). Stop it first, or "
            "start a second instance with another DATA_DIR and PORT.")  # fmt: skip
        lock.close()
        return None
    return lock


def stop_leftovers(data_dir: Path) -> None:
    """Stop every process a killed earlier run of this DATA_DIR left running (a worker finishing a job,
    a web server holding the port, a Redis still shutting down that would remove the new one's socket).

    Only called while holding run.lock, so none of them belongs to a live run.
    """
    marker = f"{RUN_MARKER}={data_dir}"
    leftovers = processes_where(lambda pid: marker in process_environment(pid))
    if leftovers:
        say(f"Stopping {len(leftovers)} processes left running by an earlier run that did not stop cleanly…")
        terminate_processes(leftovers)


def start_redis(data_dir: Path, timeout: float) -> Redis:
    """The private Redis, persistent, answering PING (its append-only file loaded) when this returns."""
    redis = Redis(data_dir, persistent=True).start(timeout)
    say(f"Redis listening on {redis.socket_path}")
    say(f"Redis keeps its queues in {redis.data_path} (append-only, fsync every second)")
    return redis


def wait_for_redis_url(url: str, timeout: float) -> None:
    """Return once the Redis at REDIS_URL answers PING; StartError after `timeout` seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as error:  # not there yet, or still loading its data
            if time.monotonic() >= deadline:
                raise StartError(f"Redis at REDIS_URL did not answer within {timeout:.0f} s ({error}).") from None
        time.sleep(0.5)


def prepare_database(data_dir: Path, timeout: float) -> None:
    """Wait for the database to answer, then migrate it and make sure an administrator exists."""
    from django.core.management import call_command

    from config.database import DatabaseUnavailable, wait_until_it_answers

    try:
        wait_until_it_answers(timeout, say)
    except DatabaseUnavailable as error:
        raise StartError(str(error)) from None
    say("Applying database migrations…")
    call_command("migrate", interactive=False, verbosity=0)
    ensure_admin(data_dir)


def start_workers(supervisor: Supervisor, counts: dict[str, int], queues: dict[str, tuple[str, ...]]) -> None:
    """Workers per kind, each kind on its own queues, so a full backup window delays no restore and
    no housekeeping (see WORKERS in the README)."""
    for kind, count in counts.items():
        for number in range(1, count + 1):
            supervisor.manage(
                f"{kind} worker {number}", "rqworker", *queues[kind],
                "--name", f"vmbackup-{os.getpid()}-{kind}-{number}", "--worker-class", WORKER_CLASS,
            )  # fmt: skip
    started = [f"{kind} ×{count} ({', '.join(queues[kind])})" for kind, count in counts.items() if count]
    say(f"Workers: {'; '.join(started) or 'none (WORKERS names none)'}")


def start_web_server(supervisor: Supervisor, port: int) -> None:
    supervisor.spawn(
        "web server",
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--worker-class", "gthread", "--access-logfile", "-", "--graceful-timeout", "10",
         "--no-control-socket"],
    )  # fmt: skip


def start_everything(supervisor: Supervisor, port: int) -> None:
    """Each part in dependency order, started once the parts it needs answer."""
    from django.conf import settings
    from django.db import connections

    from tools import demo

    if os.environ.get("REDIS_URL"):
        wait_for_redis_url(settings.REDIS_URL, settings.START_TIMEOUT)
    else:
        redis = start_redis(settings.DATA_DIR, settings.START_TIMEOUT)
        supervisor.children.append(("Redis", redis.process))  # stopped last, watched like the rest
    prepare_database(settings.DATA_DIR, settings.START_TIMEOUT)
    simulator = demo.start_if_no_vcenter(settings.DATA_DIR, say)  # returns once the simulator answers
    if simulator is not None:
        supervisor.children.append(("vCenter simulator", simulator.process))
    connections.close_all()  # the children have their own; this process needs none while it watches
    start_workers(supervisor, settings.WORKERS, settings.WORKER_QUEUES)
    supervisor.manage("scheduler", "rqcron", "config.cron")
    supervisor.manage("inventory watcher", "inventory", "watch")
    supervisor.manage("instant supervisor", "instant-supervisor")  # instant recoveries' FUSE servers and NFS
    start_web_server(supervisor, port)
    if web_server_answers(port, settings.START_TIMEOUT):
        say(f"Dashboard: http://127.0.0.1:{port}/   (Ctrl-C stops everything)")
    else:
        say(f"The web server has not answered within {settings.START_TIMEOUT} s; it may still be starting "
            f"(see its output above): http://127.0.0.1:{port}/")  # fmt: skip


def main() -> int:
    import django

    django.setup()  # reports configuration errors, one line naming the variable
    from django.conf import settings

    port = int(os.environ.get("PORT", "8000"))
    lock_path = settings.DATA_DIR / "run.lock"
    lock = hold_lock(lock_path)
    if lock is None:
        return 1
    stop_leftovers(settings.DATA_DIR)
    if not port_is_free(port):
        say(f"Port {port} is in use by another program. Choose another with PORT=8001 make run.")
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, http://127.0.0.1:{port}/\n")
    lock.flush()
    os.environ[RUN_MARKER] = str(settings.DATA_DIR)

    supervisor = Supervisor()

    def shutdown(signum: int, frame: object) -> None:
        if not supervisor.watching:
            raise KeyboardInterrupt  # still starting: stop waiting for a service at once
        supervisor.stopping = True

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    status = 0
    try:
        start_everything(supervisor, port)
        status = supervisor.watch()
    except KeyboardInterrupt:
        pass
    except (StartError, ServiceError) as error:
        say(str(error))
        status = 1
    finally:
        say("Stopping…")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all()
        lock_path.unlink(missing_ok=True)
        say("Stopped.")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
