"""The worker process is killed (SIGKILL) in the middle of a backup: nothing partial is visible, the
store trusts no half-written chunk, and a restarted worker cleans up so the next backup succeeds."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from inventory import vcenter as vsphere
from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection import actions
from tests.factories.protection import protect_simulator
from tests.factories.simulator import prod_spec
from tests.fixtures.vcsim import connect_to
from tests.waiting import wait_until
from tools.services import process_environment, processes_where, terminate_processes
from vault import engine
from vault.models import RecoveryPoint

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
SPEC = prod_spec({"name": "big", "disks_mb": [768]})


@pytest.fixture
def worker() -> Iterator[Callable[..., subprocess.Popen]]:
    """worker(env, burst=...) starts `manage.py rqworker` in a process group of its own. Whatever is
    left of them at the end, pass or fail, is stopped, work horses included (they run in sessions of
    their own, so they are found by a mark in their environment): a worker that outlived its test
    would take later tests' jobs from the shared test Redis and hold the test database open."""
    mark = f"VMB_TEST_WORKER={secrets.token_hex(8)}"

    def start(env: dict[str, str], *, burst: bool) -> subprocess.Popen:
        args = [
            sys.executable,
            "manage.py",
            "rqworker",
            "backup",
            "maintenance",
            "default",
            "--worker-class",
            "jobs.worker.CleaningWorker",
        ] + (["--burst"] if burst else [])
        name, _, value = mark.partition("=")
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env={**env, name: value},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )

    yield start
    terminate_processes(processes_where(lambda pid: mark in process_environment(pid)))


def worker_environment(store_dir: Path) -> dict[str, str]:
    """This process's environment for a worker of its own: the test database and the given store."""
    db = connection.settings_dict
    return {
        **os.environ,
        "STORE_DIR": str(store_dir),
        "DATABASE_URL": f"postgres://{db['USER']}:@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }


def snapshots(sim, vm) -> list[str]:
    with connect_to(sim) as conn:
        return [s.name for s in vsphere.list_snapshots(conn, vm.moref)]


def test_a_killed_worker_leaves_nothing_partial_and_the_next_backup_succeeds(
    vcsim_factory, redis_conn, tmp_path, django_capture_on_commit_callbacks, worker
):
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a shared database server")
    store_dir = tmp_path / "store"
    sim = vcsim_factory(SPEC, tls=True)
    image = tmp_path / "big.img"
    rng = random.Random(7)
    with image.open("wb") as fh:
        for _ in range(768):
            fh.write(rng.randbytes(MiB))
    sim.upload_disk_image("big", 0, image)
    protect_simulator(sim)
    vm = VirtualMachine.objects.get(name="big")
    env = worker_environment(store_dir)

    (run,) = actions.backup_now(None, vm=vm)
    proc = worker(env, burst=False)

    def read_some_or_ended() -> bool:
        run.refresh_from_db()
        return run.progress_done > 0 or run.status not in (JobRun.Status.QUEUED, JobRun.Status.RUNNING)

    wait_until(read_some_or_ended, timeout=60, interval=0.02, what="the backup has read its first chunks")
    assert run.status == JobRun.Status.RUNNING and run.progress_done < run.progress_total, (
        f"no chance to kill: the job is {run.status}, {run.progress_done}/{run.progress_total} done {run.error}"
    )
    # The RQ work horse runs the job in its own session: kill it and its worker, as a crash would.
    os.kill(int(run.worker.rpartition(":")[2]), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert not RecoveryPoint.objects.exists()
    store = engine.Store(store_dir)
    assert store.list_points() == []
    for chunk in (store_dir / "chunks").rglob("*"):
        if chunk.is_file():  # anything in chunks/ is whole: a later backup may trust it
            data = store.read_chunk(bytes.fromhex(chunk.name), 4 * MiB)
            assert hashlib.sha256(data).hexdigest() == chunk.name
    assert snapshots(sim, vm) == ["vmbackup"]  # left behind by the killed job

    restarted = worker(env, burst=True)  # reaps the dead job, then removes its snapshot
    restarted.wait(120)
    run.refresh_from_db()
    assert run.status == JobRun.Status.ERRORED and "stopped" in run.error
    assert snapshots(sim, vm) == []

    (again,) = actions.backup_now(None, vm=vm)
    worker(env, burst=True).wait(300)
    again.refresh_from_db()
    assert again.status == JobRun.Status.SUCCEEDED, again.error
    point = RecoveryPoint.objects.get()
    out = tmp_path / "restored.img"
    engine.restore_disk(store, store.open_point(str(point.pk)).index(str(point.disks.get().key)), out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(image.read_bytes()).digest()


def test_backup_wait_prints_the_recovery_point(vcsim_factory, redis_conn, tmp_path, worker):
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a shared database server")
    sim = vcsim_factory(prod_spec({"name": "small", "disks_mb": [16]}), tls=True)
    protect_simulator(sim)
    env = worker_environment(tmp_path / "store")
    proc = worker(env, burst=False)
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "backup", "small", "--wait"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert result.returncode == 0, result.stderr
    point = RecoveryPoint.objects.get()
    assert f"small: recovery point {point.pk}" in result.stdout
