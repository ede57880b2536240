"""The stack under test: private servers, the simulator with real disk images, and rqworker processes,
with the means to break each of them (SIGKILL, immediate restart) and start it again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import diskimages
from tools.services import Azurite, Postgres, Redis, _pg_bin, child_process_options, free_port
from tools.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
WORKER_CLASS = "jobs.worker.CleaningWorker"
WORKERS = 2  # when settings have no WORKERS: one per core, each on every queue
# Every queue the product defines, backups first as `make run` orders them; unknown ones last.
QUEUE_ORDER = ("backup", "restore", "vault", "default", "maintenance")


def say(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


@dataclass(frozen=True)
class VmSpec:
    name: str
    folder: str
    size_mib: int
    windows: bool = False
    noise_mib: int = 0  # incompressible file data, so points hold real chunks

    @property
    def instance_uuid(self) -> str:
        # Fixed, so the VMs keep their identity (and their points) when the simulator restarts.
        digest = hashlib.sha256(f"chaos-{self.name}".encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def inventory(*, quick: bool, big: bool, chain: bool, fleet: bool) -> list[VmSpec]:
    """Four VMs backed up over and over ("Prod"), three for the parallelism chain, twenty for the
    whole-stack restart. Prod disks are sized so a backup takes a second or two on this machine."""
    size, noise = (64, 12) if quick else (96, 20)
    vms = [
        VmSpec("app-1", "Prod", size, noise_mib=noise),
        VmSpec("app-2", "Prod", size, noise_mib=noise),
        VmSpec("win-1", "Prod", size, windows=True, noise_mib=noise),
        VmSpec("win-2", "Prod", size, windows=True, noise_mib=noise),
    ]
    # One VM with a larger disk for faults that must land mid-read (Redis, PostgreSQL, the simulator,
    # the quota): reading it takes a few seconds, so a random moment of the read is easy to hit.
    if big:
        vms.append(VmSpec("big-1", "Big", 256 if quick else 1024, noise_mib=24 if quick else 48))
    if chain:
        vms += [VmSpec(f"chain-{n}", "Chain", 16, noise_mib=2) for n in range(1, 4)]
    if fleet:
        vms += [VmSpec(f"fleet-{n:02}", "Fleet", 16, noise_mib=1) for n in range(1, 21)]
    return vms


def simulator_spec(vms: list[VmSpec]) -> dict[str, Any]:
    folders: dict[str, list[dict[str, Any]]] = {}
    for vm in vms:
        folders.setdefault(vm.folder, []).append(
            {
                "name": vm.name,
                "disks_mb": [vm.size_mib],
                "instance_uuid": vm.instance_uuid,
                "power_on": True,
                "guest_id": "windows2019srv_64Guest" if vm.windows else "debian11_64Guest",
            }
        )
    return {
        "datacenters": [
            {
                "name": "DC",
                "clusters": [{"name": "C", "hosts": 2}],
                "datastores": [{"name": "ds1"}],
                "folders": [{"path": path, "vms": entries} for path, entries in folders.items()],
            }
        ]
    }


def disk_image(vm: VmSpec) -> Path:
    """A real file system (cached in .cache/diskimages): the sample tree plus a file of noise."""
    noise = hashlib.shake_256(f"chaos-noise-{vm.name}".encode()).digest(vm.noise_mib * MiB) if vm.noise_mib else b""
    if vm.windows:
        tree = dict(diskimages.sample_windows_tree())
        tree["Data"] = {"blob.bin": noise, "host.txt": f"{vm.name}\r\n"}
        return diskimages.build_ntfs_disk(tree, size_mib=vm.size_mib, label="System")
    tree = dict(diskimages.sample_linux_tree()) if vm.size_mib >= 48 else {"etc": {"hostname": f"{vm.name}\n"}}
    tree["data"] = {"blob.bin": noise, "hostname": f"{vm.name}\n"}
    return diskimages.build_ext4_disk(tree, size_mib=vm.size_mib, label="root")


@dataclass
class Worker:
    name: str
    kind: str  # which of `make run`'s workers (settings.WORKERS): backup, restore, maintenance, vault
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def children_of(pid: int) -> list[int]:
    """Processes whose parent is pid (an RQ worker's work horse runs in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


@dataclass
class Stack:
    """Everything started for one chaos run, in `work` (removed at the end)."""

    work: Path
    rng: random.Random
    vms: list[VmSpec]
    vault_kind: str = "azurite"
    postgres: Postgres | None = None
    redis: Redis | None = None
    azurite: Azurite | None = None
    sim: Simulator | None = None
    workers: list[Worker] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    redis_persistent: bool = False
    _worker_count: int = 0

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    # Servers --------------------------------------------------------------------------------------

    def start_servers(self) -> None:
        # Its own directory in /tmp: as root the server runs as `postgres`, which cannot enter `work`.
        self.postgres = Postgres(Path(tempfile.mkdtemp(prefix="vmb-chaos-pg-"))).start()
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.postgres.port), "-U", "postgres", "vmbackup"],
            check=True,
        )
        self.redis = self._new_redis()
        self.redis.start()
        if self.vault_kind == "azurite":
            self.azurite = Azurite(self.work / "azurite", in_memory=True).start()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATA_DIR": str(self.data_dir),
                "DATABASE_URL": self.postgres.url(),
                "REDIS_URL": self.redis.url(),
                "DEBUG": "false",
                # Its vault may be Azurite on 127.0.0.1, over plain HTTP (vault/endpoints.py).
                "VAULT_ALLOW_HTTP_EMULATOR": "true",
            }
        )

    def _new_redis(self) -> Redis:
        """Redis with its append-only file, as `make run` keeps queued jobs across a restart (the
        `persistent` keyword of tools.services.Redis); without it the harness says so."""
        try:
            redis = Redis(self.work / "redis", persistent=True)  # type: ignore[call-arg]
        except TypeError:
            self.notes.append("tools.services.Redis has no persistent=True yet: Redis ran without an append-only file")
            return Redis(self.work / "redis")
        self.redis_persistent = True
        return redis

    def kill_redis(self) -> None:
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait()

    def start_redis_again(self) -> None:
        assert self.redis is not None
        self.redis.start()  # same directory and socket: its append-only file is read back
        # This process stands for an operator's commands, each a fresh process with a fresh
        # connection; long-lived product processes (workers) keep theirs and are measured as they are.
        import django_rq
        from django.conf import settings

        for name in settings.RQ_QUEUES:
            django_rq.get_queue(name).connection.connection_pool.disconnect()

    def restart_postgres_immediately(self) -> None:
        """`pg_ctl restart -m immediate`: the server is killed without a checkpoint and recovers."""
        pg = self.postgres
        assert pg is not None
        subprocess.run(
            pg._as_owner([_pg_bin("pg_ctl"), "-D", str(pg.datadir), "-m", "immediate", "-w", "restart"]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # Simulator ------------------------------------------------------------------------------------

    def start_simulator(self) -> None:
        spec = simulator_spec(self.vms)
        self.sim = Simulator.start(spec, workdir=self.work / "sim", tls=True, port=free_port())
        self.fill_disks()

    def fill_disks(self, folders: set[str] | None = None) -> None:
        assert self.sim is not None
        for vm in self.vms:
            if folders is None or vm.folder in folders:
                self.sim.upload_disk_image(vm.name, 0, disk_image(vm))

    def kill_and_restart_simulator(self, refill: set[str]) -> None:
        """SIGKILL the simulator, then start it again on the same port and certificate (a vCenter
        coming back after a crash: VM morefs change, instance UUIDs stay), with the disks of the
        VMs in `refill` filled again (the simulator keeps nothing)."""
        assert self.sim is not None
        self.sim.process.kill()
        self.sim.process.wait()
        self.sim.restart()
        self.fill_disks(refill)

    def guest_write(self, vm: str, chunks: int = 1, *, mib_each: int = 1) -> None:
        """Random bytes written into the disk's last quarter (free space of the file system),
        `mib_each` MiB (at most 4) at the start of each of `chunks` random 4 MiB chunks, so the next
        point holds new chunks (4 MiB each makes them incompressible: replication has to carry them)."""
        assert self.sim is not None
        spec = next(v for v in self.vms if v.name == vm)
        size = spec.size_mib * MiB
        first = (size * 3 // 4) // (4 * MiB)
        last = size // (4 * MiB) - 1
        for number in self.rng.sample(range(first, last + 1), min(chunks, last - first + 1)):
            self.sim.write_disk_range(vm, 0, number * 4 * MiB, self.rng.randbytes(min(4, mib_each) * MiB))

    # Workers --------------------------------------------------------------------------------------

    def layout(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Workers as `make run` starts them: per kind, how many and on which queues
        (settings.WORKERS and WORKER_QUEUES); two workers on every queue where those do not exist."""
        from django.conf import settings

        counts = getattr(settings, "WORKERS", None)
        queues = getattr(settings, "WORKER_QUEUES", None)
        if counts and queues:
            return {kind: (count, tuple(queues[kind])) for kind, count in counts.items() if count}
        names = list(settings.RQ_QUEUES)
        every = tuple([q for q in QUEUE_ORDER if q in names] + [q for q in names if q not in QUEUE_ORDER])
        return {"all": (WORKERS, every)}

    def start_worker(self, kind: str, *, wait: bool = True) -> Worker:
        self._worker_count += 1
        name = f"chaos-{os.getpid()}-{kind}-{self._worker_count}"
        log = open(self.work / f"worker-{self._worker_count}-{kind}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", *self.layout()[kind][1], "--worker-class", WORKER_CLASS,
                 "--name", name],
                cwd=ROOT, env={**os.environ, **self.worker_env}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, **child_process_options(),
            )  # fmt: skip
        finally:
            log.close()
        worker = Worker(name, kind, process)
        self.workers.append(worker)
        if wait:
            self.wait_ready([worker])
        return worker

    def wait_ready(self, workers: list[Worker], timeout: float = 90.0) -> None:
        """Until RQ lists the workers: by then each has run its start-up repairs and queued its
        start-up jobs (jobs.worker.CleaningWorker), so a measurement never races them."""
        import django_rq
        from rq import Worker as RqWorker

        def registered() -> bool:
            if any(not w.alive for w in workers):
                raise RuntimeError(f"a worker exited while starting (see {self.work}/worker-*.log)")
            try:
                names = {w.name for w in RqWorker.all(connection=django_rq.get_connection())}
            except Exception:  # Redis just restarted: ask again
                return False
            return all(w.name in names for w in workers)

        wait_until(registered, timeout, "the workers' start", poll=0.1)

    def start_workers(self) -> None:
        """Start whatever the layout lacks (all of it at first, the dead ones later)."""
        started = []
        for kind, (count, _queues) in self.layout().items():
            alive = len([w for w in self.workers if w.kind == kind and w.alive])
            started += [self.start_worker(kind, wait=False) for _ in range(count - alive)]
        self.wait_ready(started)

    def ensure_workers(self) -> int:
        """Replace workers that died (a supervisor, or the next `make run`, would); how many."""
        dead = [w for w in self.workers if not w.alive]
        self.workers = [w for w in self.workers if w.alive]
        self.start_workers()
        return len(dead)

    def kill_worker(self, worker: Worker) -> None:
        """SIGKILL a worker and its work horse, as a crash would."""
        for child in children_of(worker.process.pid):
            kill_quietly(child)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        self.workers.remove(worker)

    def kill_job_worker(self, horse_pid: int | None) -> bool:
        """Kill the work horse running a job and the worker that forked it; True when the horse was
        still there. A job that already ended gets a random worker killed instead."""
        parent = parent_of(horse_pid) if horse_pid else None
        if horse_pid:
            kill_quietly(horse_pid)
        owner = next((w for w in self.workers if w.process.pid == parent), None)
        self.kill_worker(owner or self.rng.choice(self.workers))
        return owner is not None

    def stop_workers(self) -> None:
        """A warm stop (SIGTERM: idle workers exit at once), killing what does not stop in 30 s."""
        for worker in self.workers:
            if worker.alive:
                worker.process.terminate()
        for worker in list(self.workers):
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_worker(worker)
        self.workers = []

    def kill_everything(self) -> None:
        """A power loss for `make run`: every worker, its work horses and Redis, SIGKILLed."""
        for worker in list(self.workers):
            self.kill_worker(worker)
        self.kill_redis()

    # Lifecycle ------------------------------------------------------------------------------------

    def stop(self) -> None:
        for worker in list(self.workers):
            if worker.alive:
                self.kill_worker(worker)
        for stop in (
            self.sim.stop if self.sim else None,
            self.redis.stop if self.redis else None,
            self.azurite.stop if self.azurite else None,
            self.postgres.stop if self.postgres else None,
        ):
            if stop is not None:
                try:
                    stop()
                except Exception as exc:  # one server that will not stop must not keep others running
                    say(f"stopping: {exc}")
        if self.postgres is not None:
            shutil.rmtree(self.postgres.directory, ignore_errors=True)

    def describe(self) -> str:
        return json.dumps(
            {
                "work": str(self.work),
                "vms": len(self.vms),
                "vault": self.vault_kind,
                "redis_append_only": self.redis_persistent,
                "workers": {kind: f"{count}× {','.join(queues)}" for kind, (count, queues) in self.layout().items()},
            }
        )
