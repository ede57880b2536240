"""Helpers shared by the management commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper


def print_json(stdout: OutputWrapper, data: Any) -> None:
    stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_table(stdout: OutputWrapper, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    stdout.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_rows(
    stdout: OutputWrapper,
    rows: list[dict[str, Any]],
    *,
    as_json: bool,
    headers: list[str],
    cells: Callable[[dict[str, Any]], list[Any]],
) -> None:
    """A listing command's output: every field of the rows as JSON, or the table `cells` picks from each."""
    if as_json:
        print_json(stdout, rows)
    else:
        print_table(stdout, headers, [cells(row) for row in rows])
