"""`make test`: start private PostgreSQL and Redis, run the suite on PostgreSQL, then the
smoke tests on SQLite, then stop what it started. Extra arguments go to pytest.
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


def main(argv: list[str]) -> int:
    CACHE.mkdir(exist_ok=True)
    redis = Redis(Path(tempfile.mkdtemp(prefix="vmb-test-redis-"))).start()
    # A new cluster in /tmp each run: the checkout's own directory may not be reachable by the
    # postgres user that the server must run as when we are root.
    postgres = Postgres(Path(tempfile.mkdtemp(prefix="vmb-test-pg-"))).start()
    data_dir = Path(tempfile.mkdtemp(prefix="vmb-test-data-"))
    try:
        env = suite_environment(redis.url(), data_dir)
        print(f"== pytest on PostgreSQL ({postgres.url()})", flush=True)
        status = pytest(argv, {**env, "DATABASE_URL": postgres.url()})
        if status == 0 and not argv:
            print("== smoke tests on SQLite", flush=True)
            status = pytest(["-m", "smoke"], {**env, "DATABASE_URL": f"sqlite:///{data_dir / 'smoke.sqlite3'}"})
        return status
    finally:
        postgres.stop()
        redis.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)
        shutil.rmtree(redis.directory, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
