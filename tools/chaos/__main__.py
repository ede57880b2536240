"""`python -m tools.chaos`: run the fault scenarios against a private stack and print the figures.

Exit status 0 only when nothing was lost, stuck or left and every injected damage was detected and
repaired; 1 otherwise (the table says where); 2 when the stack could not be set up.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.chaos.lab import Lab, set_up  # noqa: E402
from tools.chaos.measure import Figures, settle  # noqa: E402
from tools.chaos.scenarios import SCENARIOS, Scenario  # noqa: E402
from tools.chaos.stack import Stack, inventory, say  # noqa: E402

COLUMNS = ["scenario", "runs", "points lost", "chunks lost", "jobs stuck", "snapshots left", "damage detected",
           "damage repaired"]  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-2 runs per scenario, smaller disks")
    parser.add_argument("--seed", type=int, help="seed of every random choice (default: a new one, printed)")
    parser.add_argument("--only", action="append", choices=names, metavar="SCENARIO",
                        help=f"run only this scenario (repeatable): {', '.join(names)}")  # fmt: skip
    parser.add_argument("--runs", type=int, help="runs of each scenario, overriding the defaults")
    parser.add_argument("--vault", choices=["azurite", "directory"], default="azurite",
                        help="where replication goes (default: Azurite, the Azure Storage emulator)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, store) afterwards")
    return parser.parse_args(argv)


def row_of(figures: Figures) -> list[str]:
    damage = ["—", "—"] if figures.injected is None else [
        f"{figures.detected}/{figures.injected}", f"{figures.repaired}/{figures.injected}"]  # fmt: skip
    name = figures.scenario + (" (ERROR)" if figures.error else "")
    counts = [figures.runs, figures.points_lost, figures.chunks_lost, figures.jobs_stuck, figures.snapshots_left]
    return [name, *map(str, counts), *damage]


def table_line(cells: list[str], widths: list[int]) -> str:
    return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def print_table(results: list[Figures]) -> None:
    rows = [COLUMNS, *map(row_of, results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    print(table_line(rows[0], widths))
    print("-+-".join("-" * w for w in widths))
    for r in rows[1:]:
        print(table_line(r, widths))


def closing_line(results: list[Figures]) -> str:
    total = lambda attr: sum(getattr(f, attr) for f in results)  # noqa: E731
    injected = sum(f.injected or 0 for f in results)
    return (
        f"chaos: {len(results)} scenarios, {total('runs')} runs, {total('points_lost')} points lost, "
        f"{total('chunks_lost')} chunks lost, {total('jobs_stuck')} jobs stuck, {total('snapshots_left')} snapshots "
        f"left, {total('detected')}/{injected} detected, {total('repaired')}/{injected} repaired"
    )


def now() -> object:
    from django.utils import timezone

    return timezone.now()


def unsuccessful_jobs_since(since: object) -> list[str]:
    """Jobs of the scenario that did not succeed, by kind and status (the killed ones among them)."""
    from collections import Counter

    from jobs.models import JobRun

    try:
        rows = JobRun.objects.filter(created__gte=since).exclude(status=JobRun.Status.SUCCEEDED)
        counts = Counter(f"{kind} {status}" for kind, status in rows.values_list("kind", "status"))
    except Exception as exc:  # the figures matter more than this note
        return [f"jobs not counted: {exc}"]
    if not counts:
        return []
    return ["jobs that did not succeed: " + ", ".join(f"{n}× {what}" for what, n in sorted(counts.items()))]


def run_scenario(lab: Lab, scenario: Scenario, runs: int) -> Figures:
    figures = Figures(scenario.name, runs=runs)
    started = time.monotonic()
    since = now()
    say(f"== {scenario.name}: {runs} run(s)")
    try:
        scenario.run(lab, figures)
    except Exception as exc:
        figures.error = f"{type(exc).__name__}: {exc}"
        say(f"{scenario.name} stopped: {figures.error}\n{traceback.format_exc(limit=6)}")
        try:  # the next scenario must start from a settled stack all the same
            figures.notes += settle(lab.stack)
        except Exception as again:
            say(f"settling after the error failed too: {again}")
    figures.seconds = time.monotonic() - started
    figures.notes += unsuccessful_jobs_since(since)
    say(f"   {scenario.name}: {figures.seconds:.0f} s; " + "; ".join(figures.notes))
    return figures


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    needs = set().union(*(s.needs for s in chosen))
    say(f"seed {seed} (repeat with --seed {seed}); scenarios: {', '.join(s.name for s in chosen)}")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vmb-chaos-"))
    vms = inventory(quick=args.quick, big="Big" in needs, chain="Chain" in needs, fleet="Fleet" in needs)
    stack = Stack(work, random.Random(seed), vms, vault_kind=args.vault)
    results: list[Figures] = []
    # SIGTERM (a timeout, a closed terminal) unwinds like Ctrl-C, so everything started is stopped.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        try:
            stack.start_servers()
            import logging

            import django

            django.setup()
            # The Azure SDK logs every request at INFO; the figures are what this run is for.
            logging.getLogger("azure").setLevel(logging.WARNING)
            lab = set_up(stack, args.quick)
        except Exception:
            say(f"the stack could not be set up (logs in {work}):\n{traceback.format_exc()}")
            args.keep = True
            return 2
        say(f"stack ready in {time.monotonic() - started:.0f} s: {stack.describe()}")
        for note in stack.notes:
            say(f"note: {note}")
        for scenario in chosen:
            runs = args.runs or (scenario.quick_runs if args.quick else scenario.runs)
            results.append(run_scenario(lab, scenario, runs))
    finally:
        stack.stop()
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(results)
    for figures in results:
        if figures.error or not figures.clean:
            print(f"  {figures.scenario}: {figures.error or ''} {'; '.join(figures.notes)}".rstrip())
    probes = sum(f.probe_failures for f in results)
    if probes:
        print(f"backups that failed after recovery (the probe after each scenario): {probes}")
    print(f"seed {seed}, {time.monotonic() - started:.0f} s; {'; '.join(stack.notes) or 'no notes'}")
    print(closing_line(results))
    return 0 if results and all(f.clean for f in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
