"""Settings as a fresh process reads them: `manage.py check` run with a chosen environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def django_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`manage.py check ARGS` with this environment added to ours, less the database, DEBUG and SECRET_KEY
    the test run set (so the defaults apply) and with its data under tmp_path; the output is captured.
    DJANGO_ALLOW_ASYNC_UNSAFE (the browser tests set it) is left out too: check --deploy warns of it."""
    test_only = {"DATABASE_URL", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in test_only}
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT, env={**base, "DATA_DIR": str(tmp_path), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
