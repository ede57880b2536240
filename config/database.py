"""Is the database there, and is it migrated? Asked by `make run` before it migrates, and by
manage.py when a command fails on a missing table, so both answer with one sentence, not a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

MIGRATE_HINT = "run `python manage.py migrate` (make run does it for you)."


class DatabaseUnavailable(Exception):
    """The database did not answer within the time allowed; the message says which and why."""


def describe(settings_dict: dict[str, Any] | None = None) -> str:
    """Where the database is, as an operator would look for it: a file, or host:port/name."""
    config = settings_dict or connections[DEFAULT_DB_ALIAS].settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return str(config["NAME"])
    host = config.get("HOST") or "localhost"
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"{host}{port}/{config['NAME']}"


def wait_until_it_answers(timeout: float, say: Callable[[str], None]) -> None:
    """Return once a connection to the default database succeeds; after `timeout` seconds raise
    DatabaseUnavailable. PostgreSQL may still be starting (or recovering) after a power loss."""
    connection = connections[DEFAULT_DB_ALIAS]
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            connection.ensure_connection()
            return
        except DatabaseError as error:
            connection.close()
            if time.monotonic() >= deadline:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise DatabaseUnavailable(
                    f"The database at {describe()} did not answer within {timeout:.0f} s ({reason}): start it, "
                    "or fix DATABASE_URL."
                ) from None
        if not announced:
            say(f"Waiting for the database at {describe()} to answer…")
            announced = True
        time.sleep(0.5)


def unmigrated_sentence() -> str | None:
    """One sentence saying what to run when migrations are missing; None when the database is up to
    date or cannot be asked (then the original error is the better message)."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.close()  # a failed statement may have left the connection unusable
        executor = MigrationExecutor(connection)
        missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
        applied = executor.loader.applied_migrations
    except DatabaseError:
        return None
    if not missing:
        return None
    if not applied:
        return f"The database at {describe()} has no tables yet: {MIGRATE_HINT}"
    return f"The database at {describe()} lacks {len(missing)} migrations: {MIGRATE_HINT}"
