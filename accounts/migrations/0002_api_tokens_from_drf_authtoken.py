"""Existing DRF authtoken keys become ApiTokens (hashed, scope operate, named "migrated", no expiry)
so scripts keep working, and DRF's table of plain keys is dropped.

rest_framework.authtoken is no longer installed, so its table is read with SQL when it exists (an
installation from before API tokens were hashed); a new installation never had it.
"""

import hashlib

from django.db import migrations

OLD_TABLE = "authtoken_token"
# Keys of DRF tokens are 40 hexadecimal characters: "vmb_" keys never collide with them.
PREFIX_LENGTH = 8


def migrate_keys(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if OLD_TABLE not in connection.introspection.table_names(cursor):
            return
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    ApiToken = apps.get_model("accounts", "ApiToken")
    AuditEntry = apps.get_model("audit", "AuditEntry")
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="migrated",
            prefix=key[:PREFIX_LENGTH],
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            scope="operate",
        )
        ApiToken.objects.filter(pk=token.pk).update(created=created)  # auto_now_add ignores a given value
        AuditEntry.objects.create(
            actor_name="system",
            action="api.token_migrate",
            target_type="accounts.apitoken",
            target_id=str(token.pk),
            target_label=f"migrated ({token.prefix}…)",
            details={"user_id": user_id, "scope": "operate"},
        )
    schema_editor.execute("DROP TABLE authtoken_token")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_profiles_and_api_tokens"),
        ("audit", "0001_initial"),
    ]

    operations = [migrations.RunPython(migrate_keys, migrations.RunPython.noop)]
