"""Each catalog version carries its path's volume, with a partial index on the current versions: a
writer reads a volume's current versions with one index scan (through the paths, PostgreSQL chose to
read every version of every VM)."""

import django.db.models.deletion
from django.db import migrations, models

FILL = (
    "UPDATE recovery_catalogversion SET volume_id = "
    "(SELECT p.volume_id FROM recovery_catalogpath p WHERE p.id = recovery_catalogversion.path_id)"
)


class Migration(migrations.Migration):
    dependencies = [("recovery", "0005_catalog_paths_and_versions")]

    operations = [
        migrations.AddField(
            model_name="catalogversion",
            name="volume",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="versions",
                to="recovery.catalogvolume",
            ),
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="catalogversion",
            name="volume",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="versions",
                to="recovery.catalogvolume",
            ),
        ),
        migrations.AddIndex(
            model_name="catalogversion",
            index=models.Index(
                condition=models.Q(("last_seq__isnull", True)), fields=["volume"], name="catalog_version_current"
            ),
        ),
    ]
