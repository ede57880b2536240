"""The lab the faults run in, set up through the product's own actions, and what every scenario
shares: starting a job and killing its worker at a random moment, waiting for the stack to be quiet,
and the ending (settle, count stuck jobs, a probe backup of every VM, count what was lost)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.chaos.measure import Figures, Measurer, reap, retrying, settle, wait_all_final, wait_final
from tools.chaos.stack import Stack, VmSpec, say, wait_until

REPLICATION_MB_PER_S = 8  # slow enough that a kill lands inside an upload
CHAOS_ACTOR = "chaos run"


@dataclass
class Lab:
    stack: Stack
    measurer: Measurer
    quick: bool
    groups: dict[str, Any] = field(default_factory=dict)
    removed_on_purpose: set[str] = field(default_factory=set)

    @property
    def rng(self) -> Any:
        return self.stack.rng

    def vms(self, folder: str) -> list[VmSpec]:
        return [vm for vm in self.stack.vms if vm.folder == folder]

    def vm_row(self, name: str) -> Any:
        from inventory.models import VirtualMachine

        return retrying(lambda: VirtualMachine.objects.select_related("protection_group").get(name=name), "VM")


# Set-up -----------------------------------------------------------------------------------------


def set_up(stack: Stack, quick: bool) -> Lab:
    """Migrate, start workers, register the simulator, protect its folders, configure the vault and
    take a first backup of every Prod VM (the points every later fault must not lose)."""
    from django.core.management import call_command

    say("migrating a fresh database")
    call_command("migrate", interactive=False, verbosity=0)
    stack.start_workers()
    say("starting the vCenter simulator and filling its disks with real file systems")
    stack.start_simulator()
    lab = Lab(stack, Measurer(), quick)
    register_vcenter(stack)
    configure_vault(stack)
    folders = {vm.folder for vm in stack.vms}
    for folder in sorted(folders):
        lab.groups[folder] = protect_folder(folder)
    say("first backups of the Prod VMs, and their replication")
    from protection import actions

    first = [group for name, group in lab.groups.items() if name in ("Prod", "Big")]
    runs = [run for group in first for run in actions.backup_now(None, group=group)]
    for row in wait_final([r.pk for r in runs], 240, tick=reap):
        if row.status != "succeeded":
            raise RuntimeError(f"the first backup {row.title} ended {row.status}: {row.error}")
    wait_all_final(180)
    return lab


def register_vcenter(stack: Stack) -> None:
    from inventory import actions
    from inventory.models import VCenter

    sim = stack.sim
    assert sim is not None
    params = actions.ConnectionParams(
        name="chaos",
        host=sim.host,
        port=sim.port,
        username=sim.username,
        password=sim.password,
        protocol=VCenter.Protocol.HTTPS,
        verify_tls=True,
        thumbprint=sim.thumbprint or "",
    )
    vc = actions.add_vcenter(None, params)  # queues the first inventory sync
    sync_inventory(vc)


def sync_inventory(vc: Any = None) -> None:
    from inventory import actions
    from inventory.models import VCenter

    vc = vc or VCenter.objects.get(name="chaos")
    run = retrying(lambda: actions.enqueue_sync(vc), "queueing a sync")
    (row,) = wait_final([run.pk], 120, tick=reap)
    if row.status != "succeeded":
        raise RuntimeError(f"the inventory sync ended {row.status}: {row.error}")


def configure_vault(stack: Stack) -> None:
    from vault import actions
    from vault.models import VaultSettings

    config = VaultSettings.current()
    secret = None
    if stack.vault_kind == "azurite":
        assert stack.azurite is not None
        secret = stack.azurite.connection_string()
        config.kind, config.auth, config.container = (
            VaultSettings.Kind.AZURE,
            VaultSettings.Auth.CONNECTION_STRING,
            "chaos",
        )
    else:
        directory = stack.work / "vault"
        directory.mkdir(exist_ok=True)
        config.kind, config.directory = VaultSettings.Kind.DIRECTORY, str(directory)
    config.bandwidth_mb_per_s = REPLICATION_MB_PER_S
    actions.check_vault(config, secret=secret)
    actions.save_settings(CHAOS_ACTOR, config, secret=secret)


def protect_folder(folder: str) -> Any:
    from inventory.models import Folder
    from protection import actions
    from protection.actions import default_policy_values

    policy = default_policy_values()
    if folder in ("Chain", "Big"):
        policy.update(parallelism=1, replicate=False)
    elif folder == "Fleet":
        policy.update(parallelism=4, replicate=False)
    return actions.save_group(
        None,
        group=None,
        name=folder,
        description="chaos run",
        selection=actions.Selection(folder_ids=[Folder.objects.get(path=f"DC/{folder}").pk]),
        policy_values=policy,
    )


# Helpers ----------------------------------------------------------------------------------------


def typical_seconds(kind: str, default: float, *, targets: list[str] | None = None) -> float:
    """Median duration of this kind's recent successful runs (of these VMs, with targets): the
    window a kill is drawn from."""
    from jobs.models import JobRun

    rows = JobRun.objects.filter(kind=kind, status=JobRun.Status.SUCCEEDED, started__isnull=False)
    if targets is not None:
        rows = rows.filter(target_label__in=targets)
    durations = [(r.finished - r.started).total_seconds() for r in rows.order_by("-created")[:20] if r.finished]
    return statistics.median(durations) if durations else default


def wait_running(run_id: Any, timeout: float = 60.0, *, progressed: bool = False) -> Any:
    """The row once a worker claimed it (and, with progressed, reported progress), once final, or
    as it is after `timeout` (a job that never starts is itself a finding; the caller goes on)."""
    from jobs.models import JobRun

    found: list[Any] = []

    def claimed() -> bool:
        row = JobRun.objects.get(pk=run_id)
        found[:] = [row]
        if row.status in JobRun.FINAL:
            return True
        return row.status == JobRun.Status.RUNNING and (not progressed or row.progress_done > 0)

    try:
        wait_until(lambda: retrying(claimed, "reading a job"), timeout, "the job's start", poll=0.01)
    except TimeoutError:
        say(f"   {found[0].kind} {str(run_id)[:8]} did not start within {timeout:.0f} s: the fault comes anyway")
    return found[0]


def pause(seconds: float) -> None:
    """Wait this long: the random moment of a fault, not a synchronisation."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.01, max(0.0, end - time.monotonic())))


def horse_pid(run_id: Any) -> int | None:
    from jobs.models import JobRun

    worker = JobRun.objects.get(pk=run_id).worker
    pid = worker.rpartition(":")[2]
    return int(pid) if pid.isdigit() else None


def kill_mid_job(lab: Lab, run_id: Any, window: float) -> bool:
    """SIGKILL the worker running this job at a random moment of it, start a new worker (which reaps
    and queues the start-up jobs, as on any worker start); True when the kill landed mid-job."""
    from jobs.models import JobRun

    row = wait_running(run_id)
    claimed = time.monotonic()
    # Within the first 60% of a typical run: a job shorter than the median (half of them) would have
    # ended before a kill drawn from the whole of it, and a kill after the end tests nothing.
    delay = lab.rng.uniform(0, window * 0.6)
    if row.status == JobRun.Status.RUNNING:
        pause(delay)
    still_running = JobRun.objects.filter(pk=run_id, status=JobRun.Status.RUNNING).exists()
    killed_after = time.monotonic() - claimed
    landed = lab.stack.kill_job_worker(horse_pid(run_id)) and still_running
    lab.stack.start_workers()  # its replacement, as a supervisor would start it
    say(
        f"   {row.kind} killed {killed_after:.2f} s after its start (drawn from 0-{window * 0.6:.2f} s): "
        + ("mid-job" if landed else "it had ended")
    )
    return landed


def backup(lab: Lab, vm: VmSpec, *, write_chunks: int = 0) -> Any:
    """Queue a backup of vm (after a guest write into write_chunks chunks); the JobRun."""
    from protection import actions

    if write_chunks:
        lab.stack.guest_write(vm.name, write_chunks)
    (run,) = retrying(lambda: actions.backup_now(None, vm=lab.vm_row(vm.name)), "queueing a backup")
    return run


def quiet(timeout: float = 90.0) -> None:
    """Between runs: every job final, so the next run starts from a quiet system."""
    left = wait_all_final(timeout)
    if left:
        say(f"{left} job(s) still not final after {timeout:.0f} s; going on")


def finish(lab: Lab, figures: Figures, before: Any, *, replicate: bool = True) -> None:
    """Let the product heal, count the jobs it left unfinished, check that backing up still works
    (its own jobs counted too), then count what was lost."""
    figures.notes += settle(lab.stack, replicate=replicate)
    stuck = lab.measurer.count_stuck(figures)
    probe_next_backups(lab, figures)
    figures.notes += settle(lab.stack, replicate=replicate, budget=45)
    lab.measurer.count_stuck(figures, already=stuck)
    lab.measurer.count(figures, before, removed_on_purpose=lab.removed_on_purpose)


def probe_next_backups(lab: Lab, figures: Figures) -> None:
    """After recovery the next backup of every Prod VM must succeed: protection that silently
    stopped is what this run is looking for."""
    from jobs.models import JobRun
    from protection import actions

    runs = retrying(lambda: actions.backup_now(None, group=lab.groups["Prod"]), "queueing the probe backups")
    rows = wait_final([r.pk for r in runs], 90, tick=reap)
    failed = [r for r in rows if r.status != JobRun.Status.SUCCEEDED]
    figures.probe_failures += len(failed)
    for row in failed:
        figures.notes.append(f"next backup of {row.target_label} after recovery: {row.status} ({row.error[:90]})")


def until_landed(
    figures: Figures, kill: Callable[[], bool], *, what: str = "kills that landed while the job ran"
) -> None:
    """Repeat `kill` (a fault; True when it landed while the job ran) until `figures.runs` landed, with
    at most five times as many tries: a fault that came after the job ended tested nothing, so the
    table's runs are the faults that landed."""
    wanted, landed, tries = figures.runs, 0, 0
    while landed < wanted and tries < 5 * wanted:
        tries += 1
        landed += kill()
        quiet()
    figures.runs = landed
    figures.notes.append(f"{what}: {landed} of {tries} tries (wanted {wanted})")
