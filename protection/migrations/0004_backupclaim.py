# A VM's claim moves from inventory (VirtualMachine.backup_job) to protection, which owns it. The
# claims held at upgrade are copied, so a VM claimed by a running job stays claimed; inventory then
# drops its field (inventory/migrations/0004_remove_virtualmachine_backup_job.py).

import django.db.models.deletion
from django.db import migrations, models


def copy_claims_from_inventory(apps, schema_editor):
    VirtualMachine = apps.get_model('inventory', 'VirtualMachine')
    BackupClaim = apps.get_model('protection', 'BackupClaim')
    held = VirtualMachine.objects.filter(backup_job__isnull=False).values_list('pk', 'backup_job')
    BackupClaim.objects.bulk_create([BackupClaim(vm_id=pk, run_id=run_id) for pk, run_id in held])


def copy_claims_back_to_inventory(apps, schema_editor):
    VirtualMachine = apps.get_model('inventory', 'VirtualMachine')
    BackupClaim = apps.get_model('protection', 'BackupClaim')
    for claim in BackupClaim.objects.filter(run_id__isnull=False):
        VirtualMachine.objects.filter(pk=claim.vm_id).update(backup_job=claim.run_id)


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0003_virtualmachine_backup_job'),
        ('protection', '0003_backupslot'),
    ]

    operations = [
        migrations.CreateModel(
            name='BackupClaim',
            fields=[
                ('vm', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='backup_claim', serialize=False, to='inventory.virtualmachine')),
                ('run_id', models.UUIDField(blank=True, null=True)),
            ],
        ),
        migrations.RunPython(copy_claims_from_inventory, copy_claims_back_to_inventory),
    ]
