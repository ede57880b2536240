"""Django for the benchmarks that need the product's database: a private PostgreSQL and Redis (tools.services),
migrated, torn down afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.services import Postgres, Redis


@contextmanager
def django_on_private_postgres() -> Iterator[Path]:
    """Set Django up on a new PostgreSQL cluster and Redis, migrate, and yield a work directory;
    everything is stopped and removed on exit."""
    work = Path(tempfile.mkdtemp(prefix="vmb-bench-"))
    # Its own /tmp directory: the postgres user must be able to reach it (mkdtemp dirs are private).
    postgres = Postgres(Path(tempfile.mkdtemp(prefix="vmb-bench-pg-"))).start()
    redis = Redis(work / "redis").start()
    os.environ.update(
        DATABASE_URL=postgres.url("postgres"),
        REDIS_URL=redis.url(),
        DATA_DIR=str(work / "data"),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
    )
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        yield work
    finally:
        postgres.stop()
        redis.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
