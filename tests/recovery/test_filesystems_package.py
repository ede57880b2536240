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
PRODUCT_DIRS = ("api", "recovery", "tools", "tests")


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


def exported_by_the_modules() -> set[str]:
    """The names __init__.py imports from the package's own modules."""
    tree = ast.parse((Path(next(iter(filesystems.__path__))) / "__init__.py").read_text())
    imports = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.level > 0]
    return {alias.asname or alias.name for node in imports for alias in node.names}


def names_callers_use() -> dict[str, str]:
    """Every name taken from recovery.filesystems outside it, with the first file using it."""
    used: dict[str, str] = {}
    for directory in PRODUCT_DIRS:
        for path in sorted((REPO / directory).rglob("*.py")):
            if not path.is_relative_to(REPO / "recovery" / "filesystems"):
                for name in _names_taken(ast.parse(path.read_text())):
                    used.setdefault(name, str(path.relative_to(REPO)))
    return used


def _names_taken(tree: ast.Module) -> set[str]:
    """`from recovery.filesystems import X`, or `fs.X` after `from recovery import filesystems as fs`
    (or `import recovery.filesystems as fs`)."""
    names, aliases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "recovery.filesystems":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "recovery":
            aliases |= {alias.asname or alias.name for alias in node.names if alias.name == "filesystems"}
        elif isinstance(node, ast.Import):
            aliases |= {alias.asname for alias in node.names if alias.name == "recovery.filesystems"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            names.add(node.attr)
    return {name for name in names if not name.startswith("__")}  # not the module's own __all__, __path__


def test_it_exports_what_its_modules_define_and_callers_use():
    assert set(filesystems.__all__) == exported_by_the_modules()
    for name in filesystems.__all__:
        assert getattr(filesystems, name).__module__.startswith("recovery.filesystems."), name
    used = names_callers_use()
    assert {name: where for name, where in used.items() if name not in filesystems.__all__} == {}
    assert "open_disk" in used and "NotFound" in used  # the scan sees the callers


def test_it_imports_no_django():
    code = "import sys, recovery.filesystems; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
