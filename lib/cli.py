"""Helpers shared by the management commands."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import CommandError, OutputWrapper

from jobs.models import JobRun


def print_json(stdout: OutputWrapper, data: Any) -> None:
    stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(stdout: OutputWrapper, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    stdout.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def wait_for_job(stdout: OutputWrapper, run: JobRun, *, poll: float = 0.5) -> JobRun:
    """Follow a job until it is final, printing its log; a job that did not succeed is an error."""
    printed = 0
    while True:
        run.refresh_from_db()
        for line in run.log[printed:]:
            stdout.write(f"  {line['msg']}")
        printed = len(run.log)
        if run.is_final:
            break
        time.sleep(poll)
    if run.status != JobRun.Status.SUCCEEDED:
        raise CommandError(f"{run.title} {run.status}: {run.error}")
    return run
