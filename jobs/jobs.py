"""Job kinds owned by the jobs app itself."""

from __future__ import annotations

import shutil
from typing import Any

import django_rq
from django.conf import settings
from django.db import connection

from jobs.registry import job_kind
from jobs.runner import JobContext, JobFailed

# Below this much free space in DATA_DIR, backups will soon fail: say so before they do.
MIN_FREE_BYTES = 2 * 1024**3


@job_kind("system.check", title="System check")
def system_check(ctx: JobContext) -> dict[str, Any]:
    """Check that the pieces a backup depends on answer: database, Redis, the data directory."""
    ctx.set_total(3)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    ctx.log(f"Database ({connection.vendor}) answers.")
    ctx.advance()
    ctx.check_cancelled()

    redis = django_rq.get_connection("default")
    info = redis.info("server")
    ctx.log(f"Redis {info.get('redis_version', '?')} answers.")
    ctx.advance()
    ctx.check_cancelled()

    usage = shutil.disk_usage(settings.DATA_DIR)
    ctx.log(f"Data directory {settings.DATA_DIR}: {usage.free / 1024**3:.1f} GiB free.")
    ctx.advance()
    if usage.free < MIN_FREE_BYTES:
        raise JobFailed(f"Only {usage.free / 1024**3:.1f} GiB free in {settings.DATA_DIR}; backups need room.")
    return {"free_bytes": usage.free, "database": connection.vendor}
