"""On PostgreSQL the catalog's searches have their indexes: a prefix btree and pg_trgm GIN indexes on
the paths, and version pages kept half free (closing a version touches no index)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skip_allowed("the indexes are PostgreSQL's; only a run on SQLite by hand skips it"),
]


def test_the_catalog_search_indexes_exist_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("the indexes are PostgreSQL's; SQLite scans")  # the smoke run on SQLite selects no such test
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'recovery_catalogpath'")
        names = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'recovery_catalogversion'")
        options = cursor.fetchone()[0]
    assert {"catalog_path_name_prefix", "catalog_path_name_trgm", "catalog_path_path_trgm"} <= names
    assert "fillfactor=50" in options
