"""An upgrade across the move of a VM's claim and of the snapshot cleanup's outcome into protection's own
tables keeps both: a VM claimed by a running job stays claimed, and a leftover-snapshot alert that was
open stays open with the same words."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("inventory", "0003_virtualmachine_backup_job"), ("protection", "0003_backupslot")]
AFTER = [("inventory", "0004_remove_virtualmachine_backup_job"), ("protection", "0005_snapshotcleanup")]


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def latest_schema_afterwards():
    """Migrating back unapplies everything that depends on those migrations (later inventory, recovery
    and vault steps); the tests after this one need the whole schema again."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_claims_and_cleanup_outcomes_survive_the_upgrade():
    old = migrate(BEFORE)
    vcenter = old.get_model("inventory", "VCenter").objects.create(name="vc", host="vc.example")
    make_vm = old.get_model("inventory", "VirtualMachine").objects.create
    claimed = make_vm(vcenter=vcenter, name="claimed", moref="vm-1", instance_uuid="u-1", backup_job=uuid.uuid4())
    free = make_vm(vcenter=vcenter, name="free", moref="vm-2", instance_uuid="u-2")
    job = str(uuid.uuid4())
    audit = AuditEntry.objects.create  # unchanged by these migrations
    target = {"target_type": "inventory.virtualmachine", "actor_name": "snapshot cleanup"}
    audit(
        action="protection.leftover_snapshots_removed",
        target_id=str(free.pk),
        details={"job": job, "removed": 1},
        **target,
    )
    audit(
        action="protection.leftover_snapshots_not_removed",
        target_id=str(free.pk),
        details={"job": job, "error": "busy"},
        **target,
    )
    audit(
        action="protection.leftover_snapshots_removed",
        target_id=str(claimed.pk),
        details={"job": job, "removed": 2},
        **target,
    )

    new = migrate(AFTER)

    claims = new.get_model("protection", "BackupClaim").objects
    assert list(claims.values_list("vm_id", "run_id")) == [(claimed.pk, claimed.backup_job)]
    outcomes = {row.vm_id: row for row in new.get_model("protection", "SnapshotCleanup").objects.all()}
    assert (outcomes[free.pk].outcome, outcomes[free.pk].error, str(outcomes[free.pk].job)) == (
        "not_removed",
        "busy",
        job,
    )
    assert (outcomes[claimed.pk].outcome, outcomes[claimed.pk].removed) == ("removed", 2)
