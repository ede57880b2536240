# The snapshot cleanup's outcome per VM gets a table of its own, so alerts read it instead of audit
# action strings. The newest audit row of each VM is copied, so an alert open before the upgrade
# stays open (and resolves) as it did.

import uuid

import django.db.models.deletion
from django.db import migrations, models

REMOVED = 'protection.leftover_snapshots_removed'
NOT_REMOVED = 'protection.leftover_snapshots_not_removed'


def copy_outcomes_from_audit(apps, schema_editor):
    AuditEntry = apps.get_model('audit', 'AuditEntry')
    VirtualMachine = apps.get_model('inventory', 'VirtualMachine')
    SnapshotCleanup = apps.get_model('protection', 'SnapshotCleanup')
    newest = {}
    entries = AuditEntry.objects.filter(action__in=(REMOVED, NOT_REMOVED), target_type='inventory.virtualmachine')
    for entry in entries.order_by('pk'):
        if entry.target_id.isdigit():
            newest[int(entry.target_id)] = entry
    existing = set(VirtualMachine.objects.filter(pk__in=list(newest)).values_list('pk', flat=True))
    rows = []
    for vm_id, entry in newest.items():
        try:
            job = uuid.UUID(str(entry.details.get('job')))
        except ValueError:
            continue  # the cleanup always names its run; a row without one was not written by it
        if vm_id not in existing:
            continue
        removed = entry.action == REMOVED
        rows.append(
            SnapshotCleanup(
                vm_id=vm_id,
                job=job,
                checked_at=entry.created,
                outcome='removed' if removed else 'not_removed',
                removed=entry.details.get('removed', 1) if removed else 0,
                error='' if removed else entry.details.get('error') or '',
            )
        )
    SnapshotCleanup.objects.bulk_create(rows)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0001_initial'),
        ('protection', '0004_backupclaim'),
    ]

    operations = [
        migrations.CreateModel(
            name='SnapshotCleanup',
            fields=[
                ('vm', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='snapshot_cleanup', serialize=False, to='inventory.virtualmachine')),
                ('job', models.UUIDField(help_text='The cleanup run that wrote this outcome.')),
                ('checked_at', models.DateTimeField()),
                ('outcome', models.CharField(choices=[('removed', 'Leftover snapshots removed'), ('not_removed', 'Leftover snapshots not checked or not removed')], max_length=16)),
                ('removed', models.PositiveIntegerField(default=0, help_text='How many leftover snapshots were removed.')),
                ('error', models.TextField(blank=True, help_text='Why they could not be checked or removed.')),
            ],
        ),
        migrations.RunPython(copy_outcomes_from_audit, migrations.RunPython.noop),
    ]
