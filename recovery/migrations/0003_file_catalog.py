"""The file catalog: each path once (CatalogPath, which carries the search indexes), each distinct
version of it once as a narrow row (CatalogVersion, valid for the VM's points with seq in
[first_seq, last_seq]; NULL last_seq is current), and which point has which seq (CatalogPoint).

On PostgreSQL a name prefix uses a btree on lower(name) with text_pattern_ops (whatever the
database's collation); globs and fragments use pg_trgm GIN indexes on lower(name) and lower(path)
when the extension can be created (it ships with Debian's postgresql and is trusted, so the database
owner may create it; without it they scan). Version pages keep half their space free, so closing a
version (last_seq, not indexed) is a HOT update that touches no index. SQLite (the default `make run`)
scans, which is fast enough at its scale.
"""

import django.db.models.deletion
from django.db import migrations, models

PREFIX = "CREATE INDEX catalog_path_name_prefix ON recovery_catalogpath (lower(name) text_pattern_ops)"
TRIGRAM = [
    "CREATE INDEX catalog_path_name_trgm ON recovery_catalogpath USING gin (lower(name) gin_trgm_ops)",
    "CREATE INDEX catalog_path_path_trgm ON recovery_catalogpath USING gin (lower(path) gin_trgm_ops)",
]
INDEXES = ("catalog_path_name_prefix", "catalog_path_name_trgm", "catalog_path_path_trgm")


def _trigram_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    if cursor.fetchone() is not None:
        return True
    try:
        cursor.execute("SAVEPOINT catalog_trgm")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute("RELEASE SAVEPOINT catalog_trgm")
        return True
    except Exception:  # not available to this role: globs and fragments scan instead
        cursor.execute("ROLLBACK TO SAVEPOINT catalog_trgm")
        return False


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE recovery_catalogversion SET (fillfactor = 50)")
        cursor.execute(PREFIX)
        if _trigram_available(cursor):
            for statement in TRIGRAM:
                cursor.execute(statement)


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0005_placement_paths_and_networks"),
        ("recovery", "0002_restore_details_and_grants"),
        ("vault", "0006_point_archive_state"),
    ]

    operations = [
        migrations.CreateModel(
            name="CatalogPath",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("path", models.TextField()),
                ("name", models.TextField()),
            ],
        ),
        migrations.CreateModel(
            name="CatalogVm",
            fields=[
                (
                    "vm",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="catalog_state",
                        serialize=False,
                        to="inventory.virtualmachine",
                    ),
                ),
                (
                    "last_seq",
                    models.IntegerField(
                        default=0, help_text="The last sequence number given to a point (never reused)"
                    ),
                ),
                ("updated", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name="CatalogVolume",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("disk_key", models.IntegerField()),
                ("volume_index", models.IntegerField()),
                ("label", models.CharField(blank=True, max_length=255)),
                ("fs_type", models.CharField(blank=True, max_length=16)),
                (
                    "vm",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="catalog_volumes",
                        to="inventory.virtualmachine",
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
                (
                    "volume",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="versions",
                        to="recovery.catalogvolume",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="catalogpath",
            name="volume",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="paths", to="recovery.catalogvolume"
            ),
        ),
        migrations.CreateModel(
            name="CatalogPoint",
            fields=[
                (
                    "point",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="catalog",
                        serialize=False,
                        to="vault.recoverypoint",
                    ),
                ),
                ("seq", models.IntegerField(blank=True, help_text="Order among the VM's catalogued points", null=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("writing", "Being catalogued"),
                            ("catalogued", "Catalogued"),
                            ("unavailable", "Not catalogued"),
                        ],
                        default="writing",
                        max_length=12,
                    ),
                ),
                ("note", models.CharField(blank=True, help_text="Why it is not (fully) catalogued", max_length=500)),
                ("entries", models.IntegerField(default=0, help_text="Files and folders listed")),
                ("new_versions", models.IntegerField(default=0, help_text="Versions this point added")),
                ("catalogued", models.DateTimeField(blank=True, null=True)),
                (
                    "vm",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="catalog_points",
                        to="inventory.virtualmachine",
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("vm", "seq"), name="catalog_point_vm_seq")],
            },
        ),
        migrations.AddConstraint(
            model_name="catalogvolume",
            constraint=models.UniqueConstraint(fields=("vm", "disk_key", "volume_index"), name="catalog_volume_key"),
        ),
        migrations.AddIndex(
            model_name="catalogversion",
            index=models.Index(
                condition=models.Q(("last_seq__isnull", True)), fields=["volume"], name="catalog_version_current"
            ),
        ),
        migrations.AddConstraint(
            model_name="catalogpath",
            constraint=models.UniqueConstraint(fields=("volume", "path"), name="catalog_path_key"),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
