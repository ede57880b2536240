"""The catalog keeps each path once (CatalogPath, where the search indexes are) and its versions as
narrow rows (CatalogVersion): a changed file adds a version and never touches the trigram indexes,
which made writing a changed point several times slower.

The catalog written in the earlier layout is dropped and its points forgotten, so the backfill (at
worker start, or `manage.py catalog backfill`) writes it again. On PostgreSQL the version table keeps
10% of each page free, so closing a version (last_seq, not indexed) is a HOT update."""

import django.db.models.deletion
from django.db import migrations, models

PATH_INDEXES = [
    "CREATE INDEX catalog_path_name_prefix ON recovery_catalogpath (lower(name) text_pattern_ops)",
]
TRIGRAM = [
    "CREATE INDEX catalog_path_name_trgm ON recovery_catalogpath USING gin (lower(name) gin_trgm_ops)",
    "CREATE INDEX catalog_path_path_trgm ON recovery_catalogpath USING gin (lower(path) gin_trgm_ops)",
]


def forget_catalog(apps, schema_editor):
    for model in ("CatalogPoint", "CatalogVolume", "CatalogVm"):
        apps.get_model("recovery", model).objects.all().delete()


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE recovery_catalogversion SET (fillfactor = 90)")
        for statement in PATH_INDEXES:
            cursor.execute(statement)
        # pg_trgm was created by 0004 where the role may; without it, globs and fragments scan.
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is not None:
            for statement in TRIGRAM:
                cursor.execute(statement)


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in ("catalog_path_name_prefix", "catalog_path_name_trgm", "catalog_path_path_trgm"):
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("recovery", "0004_catalog_search_indexes"),
    ]

    operations = [
        migrations.RunPython(forget_catalog, migrations.RunPython.noop),
        migrations.CreateModel(
            name="CatalogPath",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("path", models.TextField()),
                ("name", models.TextField()),
                (
                    "volume",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="paths", to="recovery.catalogvolume"
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="CatalogVersion",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("is_dir", models.BooleanField(default=False)),
                ("size", models.BigIntegerField(default=0)),
                ("modified", models.DateTimeField(blank=True, null=True)),
                ("owner", models.CharField(blank=True, max_length=200)),
                ("first_seq", models.IntegerField()),
                ("last_seq", models.IntegerField(blank=True, null=True)),
                (
                    "path",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="versions",
                        to="recovery.catalogpath",
                    ),
                ),
            ],
        ),
        migrations.DeleteModel(
            name="CatalogFile",
        ),
        migrations.AddConstraint(
            model_name="catalogpath",
            constraint=models.UniqueConstraint(fields=("volume", "path"), name="catalog_path_key"),
        ),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
