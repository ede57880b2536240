"""Modules a newcomer can hold in their head: no product module over 600 lines, no function over 80
lines or with more than 7 parameters. Read from the source with `ast`, over the same files as the
layer rule (every app, migrations excluded). An exception needs an entry here with its reason, and a
sentence in ARCHITECTURE.md that names the file, so it is a decision and not drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_architecture import ROOT, product_files

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 7  # the same limit as ruff's PLR0913 in pyproject.toml

# "path" or "path:function" -> why it may be larger. Each must be named in ARCHITECTURE.md.
EXCEPTIONS: dict[str, str] = {}


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    # A method's self or cls is not a parameter a caller passes.
    if names and names[0].arg in ("self", "cls") and names[0] in (args.posonlyargs + args.args):
        count -= 1
    return count


def size_violations(files: list[Path], root: Path = ROOT) -> list[str]:
    found: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES and rel not in EXCEPTIONS:
            found.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if f"{rel}:{node.name}" in EXCEPTIONS:
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{rel}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
            if _parameters(node) > MAX_PARAMETERS:
                found.append(f"{rel}:{node.lineno} {node.name}: {_parameters(node)} parameters")
    return found


def test_no_module_function_or_signature_is_too_large_to_read():
    assert size_violations(product_files()) == []


def test_every_size_exception_is_explained_in_architecture():
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    unexplained = [key for key in EXCEPTIONS if key.split(":")[0] not in architecture]
    assert unexplained == []


def test_the_size_rule_catches_a_long_function_and_a_long_signature(tmp_path):
    app = tmp_path / "lib"
    app.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    (app / "big.py").write_text(f"def long_one():\n{body}\n\n\ndef wide(a, b, c, d, e, f, g, h):\n    pass\n")
    found = size_violations([app / "big.py"], root=tmp_path)
    assert [line.split(" ")[1] for line in found] == ["long_one:", "wide:"]
