"""`make test`: start private PostgreSQL and Redis, run the suite on PostgreSQL, then the
smoke tests on SQLite, then stop what it started. Extra arguments go to pytest (and then only that
one pytest runs).

The tests marked `own_world` start their own servers, workers and data directories and mostly wait
on them (a reaper's grace period, a supervisor coming back): a full run starts them first in a
second pytest beside the rest, with its own Redis database, test database name, data directory and
temporary directory, and prints their report after the main one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.services import Postgres, Redis

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"


def suite_environment(redis_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of both pytest runs. VMB_STRICT_TESTS=1 makes every skip a failure
    (tests/strict.py): a tool that make test should have installed must not go untested silently.
    VAULT_ALLOW_HTTP_EMULATOR: the tests' vault is Azurite on 127.0.0.1, over plain HTTP."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATA_DIR": str(data_dir),
        "DEBUG": "false",
        "VMB_STRICT_TESTS": "1",
        "VAULT_ALLOW_HTTP_EMULATOR": "true",
    }


def pytest(args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)


class Beside:
    """The `own_world` tests in a pytest of their own, running while the main one does."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.log_path = scratch / "own-world.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in wait())
        args = ["-m", "own_world", "-p", "no:cacheprovider", f"--basetemp={scratch / 'tmp'}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait(self) -> int:
        """Its exit status, once it has ended, with its report printed."""
        status = self.proc.wait()
        self.log.close()
        print("== beside it, the tests that start their own world (-m own_world)", flush=True)
        sys.stdout.write(self.log_path.read_text(errors="replace"))
        sys.stdout.flush()
        return status

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main(argv: list[str]) -> int:
    CACHE.mkdir(exist_ok=True)
    redis = Redis(Path(tempfile.mkdtemp(prefix="vmb-test-redis-"))).start()
    # A new cluster in /tmp each run: the checkout's own directory may not be reachable by the
    # postgres user that the server must run as when we are root.
    postgres = Postgres(Path(tempfile.mkdtemp(prefix="vmb-test-pg-"))).start()
    data_dir = Path(tempfile.mkdtemp(prefix="vmb-test-data-"))
    scratch = Path(tempfile.mkdtemp(prefix="vmb-test-beside-"))  # the own_world run's
    beside: Beside | None = None
    try:
        env = suite_environment(redis.url(), data_dir)
        if not argv:
            (scratch / "data").mkdir()
            beside_env = suite_environment(redis.url(db=1), scratch / "data")
            beside = Beside({**beside_env, "DATABASE_URL": postgres.url("vmbackup_beside")}, scratch)
        print(f"== pytest on PostgreSQL ({postgres.url()})", flush=True)
        main_args = argv or ["-m", "not own_world"]
        status = pytest(main_args, {**env, "DATABASE_URL": postgres.url()})
        if beside is not None:
            status = beside.wait() or status
            beside = None
        if status == 0 and not argv:
            print("== smoke tests on SQLite", flush=True)
            status = pytest(["-m", "smoke"], {**env, "DATABASE_URL": f"sqlite:///{data_dir / 'smoke.sqlite3'}"})
        return status
    finally:
        if beside is not None:
            beside.stop()
        postgres.stop()
        redis.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)
        shutil.rmtree(redis.directory, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
