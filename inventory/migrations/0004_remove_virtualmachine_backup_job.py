# A VM's claim is protection's now (protection.BackupClaim); its migration copied the claims first.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0003_virtualmachine_backup_job'),
        ('protection', '0004_backupclaim'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='virtualmachine',
            name='backup_job',
        ),
    ]
