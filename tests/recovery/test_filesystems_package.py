"""recovery.filesystems is a package of small modules of one idea each, behind the public API it always had.

The behaviour of the file systems is tested on real disk images in test_filesystems.py; these tests
keep the shape: module and function sizes, no module reaching into another's private names, the
public names callers import, and no Django.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import recovery.filesystems as filesystems

REPO = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# What views, the API, commands, tools and tests import from recovery.filesystems (grep the tree).
PUBLIC_API = {
    "DamagedFileSystem",
    "DiskLayout",
    "Entry",
    "FileSystem",
    "FileSystemError",
    "NotADirectory",
    "NotAFile",
    "NotBrowsable",
    "NotFound",
    "Volume",
    "open_disk",
    "sid_name",
    "split_path",
}


def package_modules() -> list[Path]:
    # A plain module has no __path__: the AttributeError is the failure before the split.
    return sorted(Path(next(iter(filesystems.__path__))).glob("*.py"))


def test_it_is_a_package_of_several_modules():
    names = {module.stem for module in package_modules()}
    assert {"__init__", "base", "sniff", "layout", "ntfs", "ext", "xfs", "fat"} <= names


def test_no_module_in_it_is_longer_than_600_lines():
    lengths = {module.name: len(module.read_text().splitlines()) for module in package_modules()}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_in_it_is_longer_than_80_lines():
    too_long = []
    for module in package_modules():
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module.name}:{node.name} ({length} lines)")
    assert too_long == []


def test_its_modules_import_no_private_names_from_each_other():
    private = []
    for module in package_modules():
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            ours = node.level > 0 or (node.module or "").startswith("recovery.filesystems")
            private += [f"{module.name}: {alias.name}" for alias in node.names if ours and alias.name.startswith("_")]
    assert private == []


def test_it_exports_the_public_api_callers_import():
    assert set(filesystems.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(filesystems, name).__module__.startswith("recovery.filesystems."), name


def test_it_imports_no_django():
    code = "import sys, recovery.filesystems; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
