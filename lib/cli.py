"""Helpers shared by the management commands."""

from __future__ import annotations

import json
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
