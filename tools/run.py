"""`make run`: migrate, make sure an administrator exists, then start and supervise everything.

Started here, in this order: a private Redis (unless REDIS_URL is set), the vCenter simulator
with a demo inventory (when no real vCenter is configured), RQ workers, RQ's cron scheduler,
the inventory watcher (live vCenter changes) and gunicorn. Ctrl-C (or SIGTERM) stops all of
them; if one of them dies, the others are stopped too, so nothing is left running half-way.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.services import child_process_options  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

WORKERS = 2  # one per core: backups are I/O and hashing bound, and the machine is small
ADMIN_NAME = "admin"


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


def wait_for_port(port: int, timeout: float) -> bool:
    """True once something accepts connections on the port (the web server is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


class Supervisor:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, **child_process_options())
        self.children.append((name, proc))
        return proc

    def manage(self, name: str, *args: str) -> subprocess.Popen:
        return self.spawn(name, [sys.executable, "manage.py", *args])

    def watch(self) -> int:
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
    """Create the administrator `admin` with a random password when no administrator exists."""
    import secrets

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction

    from accounts.roles import BACKUP_ADMIN
    from audit.actions import record

    User = get_user_model()
    if User.objects.filter(groups__name=BACKUP_ADMIN, is_active=True).exists():
        say("Log in with your administrator account.")
        return
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user = User.objects.filter(username=ADMIN_NAME).first() or User(username=ADMIN_NAME)
        user.set_password(password)
        user.is_active = True
        user.save()
        user.groups.add(Group.objects.get(name=BACKUP_ADMIN))
        record(None, "account.create_admin", target=user, details={"by": "make run"})
    password_file = data_dir / "initial-admin-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    say(f"Created the administrator {ADMIN_NAME!r} with password {password}")
    say(f"(also kept in {password_file}; change it after logging in)")


def main() -> int:
    import django

    django.setup()  # reports configuration errors, one line naming the variable
    from django.conf import settings

    port = int(os.environ.get("PORT", "8000"))
    lock_path = settings.DATA_DIR / "run.lock"
    lock = open(lock_path, "a+")  # noqa: SIM115  (held for the life of the process)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        say(f"Already running for DATA_DIR={settings.DATA_DIR} ({lock.read().strip()}). Stop it first, or "
            "start a second instance with another DATA_DIR and PORT.")  # fmt: skip
        return 1
    if not port_is_free(port):
        say(f"Port {port} is in use by another program. Choose another with PORT=8001 make run.")
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, http://127.0.0.1:{port}/\n")
    lock.flush()

    from django.core.management import call_command

    say("Applying database migrations…")
    call_command("migrate", interactive=False, verbosity=0)
    ensure_admin(settings.DATA_DIR)

    supervisor = Supervisor()
    redis = None

    def shutdown(signum: int, frame: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    status = 0
    try:
        if not os.environ.get("REDIS_URL"):
            from tools.services import Redis

            redis = Redis(settings.DATA_DIR).start()
            say(f"Redis listening on {redis.socket_path}")
        from tools import demo

        simulator = demo.start_if_no_vcenter(settings.DATA_DIR, say)
        if simulator is not None:
            supervisor.children.append(("vCenter simulator", simulator.process))
        for number in range(1, WORKERS + 1):
            supervisor.manage(
                f"worker {number}", "rqworker", "backup", "restore", "default", "maintenance",
                "--name", f"vmbackup-{os.getpid()}-{number}", "--worker-class", "jobs.worker.CleaningWorker",
            )  # fmt: skip
        supervisor.manage("scheduler", "rqcron", "config.cron")
        supervisor.manage("inventory watcher", "inventory", "watch")
        supervisor.spawn(
            "web server",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--threads", "4", "--worker-class", "gthread", "--access-logfile", "-", "--graceful-timeout", "10",
             "--no-control-socket"],
        )  # fmt: skip
        if wait_for_port(port, 60):
            say(f"Dashboard: http://127.0.0.1:{port}/   (Ctrl-C stops everything)")
        status = supervisor.watch()
    finally:
        say("Stopping…")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        supervisor.stop_all()
        if redis is not None:
            redis.stop()
        lock_path.unlink(missing_ok=True)
        say("Stopped.")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
