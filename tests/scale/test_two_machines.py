"""Two worker machines for real (issue 18 item 3, the small form of `make bench-scale`): separate
process trees with their own DATA_DIR, MACHINE_NAME, workers and scheduler, sharing one PostgreSQL,
one Redis and one store, against one simulator with 10 VMs whose disks hold real file systems.

It runs `python -m tools.bench_scale` (its own private servers, so the workers never meet the test
database) and asserts every figure the bench prints. The kill goes through the cross-machine path:
the survivor's name differs, so the dead machine's rows are errored only once RQ's registry drops
them and the reaper's two minutes have passed, which is most of this test's three minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VMS, LIMIT = 10, 3
KILL_SLOT = 4
pytestmark = pytest.mark.own_world  # make test runs it beside the rest (tools/test.py)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("scale") / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench_scale", "--machines", "2", "--vms", str(VMS), "--disk-mib", "32",
         "--limit", str(LIMIT), "--reap-every", "2", "--slot-timeout", "240", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads(out.read_text())


def test_every_vm_is_backed_up_exactly_once_per_slot_though_both_machines_tick_every_slot(figures) -> None:
    slots = {entry["slot"]: entry for entry in figures["slots"]}
    assert sorted(slots) == [1, 2, 3, 4, 5]
    errors = figures["end"].get("errors")  # why a job did not succeed, in the failure's message
    for number, entry in slots.items():
        ticked = 1 if number == KILL_SLOT + 1 else 2  # the slot after the kill: the survivor alone
        assert len(entry["queued_by_machine"]) == ticked, entry
        assert sum(entry["queued_by_machine"]) == VMS, entry  # one tick claimed the slot, the other none
        assert (entry["runs_min"], entry["runs_max"]) == (1, 1), entry
        assert (entry["succeeded_min"], entry["succeeded_max"]) == (1, 1), (entry, errors)
        deleted = number == 1  # slot 1's points were deleted to give the GC garbage
        assert (entry["points_min"], entry["points_max"]) == ((0, 0) if deleted else (1, 1)), entry
    assert slots[1]["machines"] == ["machine-a", "machine-b"]  # both machines' workers took backups


def test_max_concurrent_backups_holds_across_both_machines(figures) -> None:
    assert figures["samples"] >= 100
    assert 1 <= figures["max_concurrent"] <= LIMIT
    assert figures["max_slots_held"] <= LIMIT


def test_a_gc_on_one_machine_while_the_other_backs_up_loses_nothing(figures) -> None:
    gc = figures["gc"]
    assert gc["status"] == "succeeded", gc
    assert gc["backups_on_other_machines_meanwhile"] >= 1, gc
    assert gc["chunks_swept"] >= VMS, gc  # the deleted points' chunks that never came back
    assert (gc["verify_status"], gc["verified"]) == ("succeeded", gc["points"]), gc
    assert gc["points"] == 2 * VMS
    assert gc["chunks_missing_or_corrupt"] == gc["points_unreadable"] == 0, gc
    assert gc["store_points_without_row"] == gc["rows_without_store_point"] == gc["staging_left"] == 0, gc


def test_a_killed_machines_vms_are_backed_up_by_the_other_at_the_next_slot_and_nothing_is_left(figures) -> None:
    kill, end = figures["kill"], figures["end"]
    assert kill["machine"] == "machine-a" and kill["killed_vms"], kill
    assert kill["reaped_statuses"] == ["errored"], kill
    assert kill["backed_up_next_slot"] == kill["killed_vms"], kill
    assert kill["backed_up_by"] == ["machine-b"], kill
    assert end["killed_machine_rows_not_final"] == end["rows_not_final"] == 0, end
    assert (end["cleanup_status"], end["snapshots_left"]) == ("succeeded", 0), end
    assert end["staging_left"] == 0, end
    assert end["chunks_missing_or_corrupt"] == end["points_unreadable"] == 0, end
    assert end["rows_without_store_point"] == 0, end
    # A backup killed after publishing its point but before writing its row leaves that point, whole,
    # for the reconciler to adopt (vault/reconcile.py): never a partial one, never another VM's.
    assert end["store_points_without_row"] <= len(kill["killed_vms"]), end
    assert end["store_points_without_row_whole"], end
    assert set(end["store_points_without_row_vms"]) <= set(kill["killed_vms"]), end
    assert end["jobs_not_succeeded"] == {}, end
