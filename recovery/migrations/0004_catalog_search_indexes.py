"""Search indexes for the file catalog on PostgreSQL: a name prefix uses a btree on lower(name) with
text_pattern_ops (whatever the database's collation); globs and fragments use pg_trgm GIN indexes on
lower(name) and lower(path) when the extension can be created (it ships with Debian's postgresql and
is a trusted extension, so the database owner may create it). SQLite (the default `make run`) scans,
which is fast enough at its scale."""

from django.db import migrations

PREFIX = "CREATE INDEX IF NOT EXISTS catalog_file_name_prefix ON recovery_catalogfile (lower(name) text_pattern_ops)"
TRIGRAM = [
    "CREATE INDEX IF NOT EXISTS catalog_file_name_trgm ON recovery_catalogfile USING gin (lower(name) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS catalog_file_path_trgm ON recovery_catalogfile USING gin (lower(path) gin_trgm_ops)",
]
DROP = ["catalog_file_name_prefix", "catalog_file_name_trgm", "catalog_file_path_trgm"]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PREFIX)
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            try:
                cursor.execute("SAVEPOINT catalog_trgm")
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                cursor.execute("RELEASE SAVEPOINT catalog_trgm")
            except Exception:  # not available to this role: globs and fragments scan instead
                cursor.execute("ROLLBACK TO SAVEPOINT catalog_trgm")
                return
        for statement in TRIGRAM:
            cursor.execute(statement)


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in DROP:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("recovery", "0003_file_catalog")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
