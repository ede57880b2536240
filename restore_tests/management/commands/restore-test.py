"""`manage.py restore-test`:

- `restore-test VM [VM...] [--point ID] [--wait]`: queue a restore test of each VM (its newest point
  not tested yet, or --point for one VM);
- `restore-test --group NAME [--wait]`: the same for every VM the protection group covers;
- `restore-test list [--json]`: the tests, newest first.

With --wait the command follows each job and fails when a test did not pass. The tests run on the
`verify` queue (`make run` starts its workers)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import VirtualMachine
from jobs.cli import wait_for_job
from jobs.models import JobRun
from lib.cli import print_rows, shown
from protection.models import ProtectionGroup
from recovery.management.commands._points import CLI_ACTOR, find_point
from restore_tests import actions
from restore_tests.models import RestoreTest


class Command(BaseCommand):
    help = "Queue restore tests of VMs (or of a protection group's VMs), or list the tests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("vms", nargs="*", metavar="VM", help="VM names, or `list`")
        parser.add_argument("--group", help="test every VM of this protection group")
        parser.add_argument("--point", help="recovery point id or prefix (one VM only; default: newest untested)")
        parser.add_argument("--wait", action="store_true", help="wait for the tests; fail when one did not pass")
        parser.add_argument("--json", action="store_true", help="with list: every field as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["vms"]
        if names == ["list"] and not options["group"]:
            self._list(options["json"])
            return
        vms, group = self._targets(names, options["group"])
        point = None
        if options["point"]:
            if len(vms) != 1:
                raise CommandError("--point goes with exactly one VM.")
            point = find_point(vms[0].name, options["point"])
        queued, refused = self._queue(vms, group, point)
        failed = [message for run in queued for message in self._waited(run, options["wait"])]
        problems = refused + failed
        if len(vms) == 1 and problems:
            raise CommandError(problems[0])
        for problem in problems:
            self.stderr.write(shown(problem))
        if problems:
            raise CommandError(f"{len(problems)} of {len(vms)} restore tests were not queued or did not pass.")

    def _targets(self, names: list[str], group_name: str | None) -> tuple[list[VirtualMachine], ProtectionGroup | None]:
        if bool(names) == bool(group_name):
            raise CommandError("Name the VMs to test, or --group NAME (not both), or `list`.")
        if names:
            return [_vm(name) for name in dict.fromkeys(names)], None
        group = ProtectionGroup.objects.filter(name=group_name).first()
        if group is None:
            raise CommandError(f"There is no protection group {group_name!r}.")
        vms = list(VirtualMachine.objects.filter(protection_group=group, removed_at__isnull=True).order_by("name"))
        if not vms:
            raise CommandError(f"The protection group {group.name!r} covers no VM.")
        return vms, group

    def _queue(
        self, vms: list[VirtualMachine], group: ProtectionGroup | None, point: Any
    ) -> tuple[list[JobRun], list[str]]:
        queued: list[JobRun] = []
        refused: list[str] = []
        for vm in vms:
            try:
                test = actions.start_test(CLI_ACTOR, vm, point=point, group=group)
            except actions.RestoreTestRefused as exc:
                refused.append(str(exc))
                continue
            assert test.job is not None  # start_test queues its job
            self.stdout.write(f"Restore test {test.pk} of {shown(vm.name)}: job {test.job.pk}.")
            queued.append(test.job)
        return queued, refused

    def _waited(self, run: JobRun, wait: bool) -> list[str]:
        """[] once the job succeeded (or when not waiting), else the reason it did not."""
        if not wait:
            return []
        try:
            wait_for_job(self.stdout, run)
        except CommandError as exc:
            return [str(exc)]
        return []

    def _list(self, as_json: bool) -> None:
        tests = RestoreTest.objects.select_related("vm", "job").order_by("-queued", "-pk")
        print_rows(
            self.stdout,
            [_row(test) for test in tests],
            as_json=as_json,
            headers=["ID", "VM", "POINT", "STATE", "FAILED CHECK", "ERROR", "STARTED", "DURATION", "READ"],
            cells=lambda r: [
                r["id"],
                r["vm"],
                r["point_created"][:16],
                r["state"],
                r["failed_check"],
                r["error"][:60],
                (r["started"] or "")[:19],
                _seconds(r["duration_seconds"]),
                r["bytes_read"],
            ],  # fmt: skip
        )


def _vm(name: str) -> VirtualMachine:
    vms = list(VirtualMachine.objects.filter(name=name)[:2])
    if len(vms) != 1:
        raise CommandError(f"{name!r} names {'no' if not vms else 'more than one'} VM.")
    return vms[0]


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} s"


def _row(test: RestoreTest) -> dict[str, Any]:
    duration = test.duration
    return {
        "id": test.pk,
        "vm": test.vm.name,
        "point": str(test.point_id) if test.point_id else None,
        "point_created": test.point_created.isoformat() if test.point_created else "",
        "state": test.state,
        "failed_check": test.failed_check,
        "error": test.error,
        "steps": test.steps,
        "test_vm_name": test.test_vm_name,
        "queued": test.queued.isoformat(),
        "started": test.started.isoformat() if test.started else None,
        "finished": test.finished.isoformat() if test.finished else None,
        "duration_seconds": duration.total_seconds() if duration else None,
        "bytes_read": test.bytes_read,
        "job": str(test.job_id) if test.job_id else None,
    }
