"""Helpers shared by the management commands.

Names the commands print come from vCenter, guests and directories: a VM, user or group name may
hold a newline or an escape sequence that would forge lines or drive the terminal. Human-readable
output passes them through `shown` (tables do it for every cell); JSON escapes them itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper

# C0 controls, DEL, C1 controls, and the line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x20 or code == 0x7F else f"\\u{code:04x}"


def shown(value: Any) -> str:
    """`value` as text for a terminal: C0 controls and DEL as \\xNN, C1 controls and U+2028/2029 as
    \\uNNNN, as recovery.names writes them in file names; everything else as is."""
    text = str(value)
    return text if text.isprintable() else _CONTROL.sub(_escaped, text)


def _json_c1(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def print_json(stdout: OutputWrapper, data: Any) -> None:
    # json escapes C0 controls; DEL and C1 controls (e.g. CSI, U+009B) it leaves raw with ensure_ascii=False.
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    stdout.write(re.sub(r"[\x7f-\x9f\u2028\u2029]", _json_c1, text))


def print_table(stdout: OutputWrapper, headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[shown(c) for c in row] for row in rows]
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
