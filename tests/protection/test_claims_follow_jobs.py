"""A backup slot and a VM's claim never outlive their job: when the reaper makes a dead backup's row
final (its `finally` never ran), protection frees what it held, and leaves live jobs' holdings alone."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import VirtualMachine
from jobs.maintenance import reap_orphaned_runs
from jobs.models import JobRun
from protection import claims
from protection.models import BackupSlot
from protection.scheduling import BACKUP_KIND
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db
Status = JobRun.Status


def a_dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def running_backup(vm: VirtualMachine, worker_pid: int) -> JobRun:
    """A backup row as its worker left it, holding the VM and a slot (what protection.jobs.backup takes)."""
    run = JobRun.objects.create(
        kind=BACKUP_KIND,
        title=f"Backup of {vm.name}",
        queue="backup",
        target_type="inventory.virtualmachine",
        target_id=str(vm.pk),
        status=Status.RUNNING,
        started=timezone.now() - timedelta(seconds=30),
        worker=f"{socket.gethostname()}:{worker_pid}",
    )
    assert claims.claim_vm(vm.pk, run.pk)
    return run


def test_a_reaped_backup_frees_its_backup_slot_and_vm_claim(redis_conn):
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    dead_vm, live_vm = create_test_vm(folders["Prod"], "dead"), create_test_vm(folders["Prod"], "live")
    dead = running_backup(dead_vm, a_dead_pid())
    live = running_backup(live_vm, os.getpid())
    BackupSlot.objects.bulk_create([BackupSlot(number=1, job=dead.pk), BackupSlot(number=2, job=live.pk)])

    assert reap_orphaned_runs() == 1

    dead.refresh_from_db()
    assert dead.status == Status.ERRORED
    assert BackupSlot.objects.get(number=1).job is None
    assert claims.claim_holder_id(dead_vm.pk) is None
    # The live backup keeps what it holds.
    assert BackupSlot.objects.get(number=2).job == live.pk
    assert claims.claim_holder_id(live_vm.pk) == live.pk


def test_a_sync_whose_row_the_reaper_made_final_no_longer_blocks_the_next_sync(
    redis_conn, django_capture_on_commit_callbacks
):
    from inventory.actions import SYNC_KIND, enqueue_sync

    vc = create_test_vcenter()
    with django_capture_on_commit_callbacks(execute=True):
        stuck = enqueue_sync(vc)
    JobRun.objects.filter(pk=stuck.pk).update(status=Status.RUNNING, worker=f"{socket.gethostname()}:{a_dead_pid()}")
    assert enqueue_sync(vc).pk == stuck.pk  # busy while its row says running

    reap_orphaned_runs()

    with django_capture_on_commit_callbacks(execute=True):
        fresh = enqueue_sync(vc)
    assert fresh.pk != stuck.pk and fresh.kind == SYNC_KIND and fresh.status == Status.QUEUED
