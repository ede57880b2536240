"""The rules the architecture depends on, checked on every module of the product.

Apps depend downward only, and pyVmomi stays behind its one door (`inventory/vcenter/`). Both rules
are read from the source with `ast`, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top; apps on one level are siblings and must not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lib",),
    ("audit",),
    ("jobs",),
    ("accounts", "inventory", "vault"),
    ("protection",),
    ("recovery",),
    ("instant",),
    ("restore_tests",),
    ("alerts", "reports", "dashboard", "teams"),
    ("api",),
    ("config",),
)
LEVEL: dict[str, int] = {app: level for level, apps in enumerate(LAYERS) for app in apps}

# Imports the layer rule tolerates for now, each with the reason. Keys: (importing file, app it imports).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    # RecoveryPoint.vm is a foreign key to inventory.VirtualMachine, so the vault already depends on
    # the inventory through its models; reconcile asks whether a manifest's VM still exists before
    # adopting the point. The honest fix is a layer picture with inventory below vault.
    ("vault/reconcile.py", "inventory"): "reconcile checks a manifest's VM exists",
}

VCENTER_DOOR = "inventory/vcenter/"
VSPHERE_PACKAGES = ("pyVmomi", "pyVim")


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository root, with forward slashes
    line: int
    module: str  # the absolute dotted name imported

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def product_files(root: Path = ROOT) -> list[Path]:
    """Every Python file of the product's apps; migrations are generated history, not design."""
    files: list[Path] = []
    for app in LEVEL:
        files.extend(p for p in (root / app).rglob("*.py") if "migrations" not in p.relative_to(root).parts)
    return sorted(files)


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a relative import in `path` starts from."""
    return list(path.relative_to(root).parent.parts)


def imports_in(path: Path, root: Path = ROOT) -> list[Import]:
    """Every import in one file, at any depth, with relative imports made absolute."""
    relative = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(Import(relative, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path, root)
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            # `from app import module` names the module, so check each name under the package too.
            found.append(Import(relative, node.lineno, base))
            found.extend(Import(relative, node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def layer_violations(root: Path = ROOT) -> list[Import]:
    bad: dict[tuple[str, int, str], Import] = {}
    for path in product_files(root):
        own_app = path.relative_to(root).parts[0]
        for imp in imports_in(path, root):
            target = imp.module.split(".")[0]
            if target == own_app or target not in LEVEL or LEVEL[target] < LEVEL[own_app]:
                continue
            if (imp.path, target) in ALLOWED_UPWARD:
                continue
            # Report the package once rather than every name taken from it.
            key = (imp.path, imp.line, target)
            bad.setdefault(key, imp)
    return list(bad.values())


def vsphere_imports_outside_the_door(root: Path = ROOT) -> list[Import]:
    return [
        imp
        for path in product_files(root)
        if not path.relative_to(root).as_posix().startswith(VCENTER_DOOR)
        for imp in imports_in(path, root)
        if imp.module.split(".")[0] in VSPHERE_PACKAGES
    ]


def _describe(imp: Import, root_app: str) -> str:
    target = imp.module.split(".")[0]
    relation = "a sibling on its level" if LEVEL[target] == LEVEL[root_app] else "an app above it"
    return f"{imp} ({root_app} -> {target}: {relation})"


def test_apps_import_only_apps_below_them() -> None:
    violations = layer_violations()
    assert not violations, "imports that point up a layer or sideways:\n" + "\n".join(
        _describe(imp, imp.path.split("/")[0]) for imp in violations
    )


def test_only_inventory_vcenter_imports_pyvmomi() -> None:
    stray = vsphere_imports_outside_the_door()
    assert not stray, f"pyVmomi/pyVim imported outside {VCENTER_DOOR}:\n" + "\n".join(map(str, stray))


def test_every_allowed_upward_import_still_exists() -> None:
    # An exception nobody needs any more should leave the list, or the list only grows.
    present = {(imp.path, imp.module.split(".")[0]) for path in product_files() for imp in imports_in(path)}
    stale = [key for key in ALLOWED_UPWARD if key not in present]
    assert not stale, f"allow-list entries no longer needed: {stale}"


def test_the_checks_see_imports_inside_functions(tmp_path: Path) -> None:
    # The rule is only as good as the parser: a function-level upward import must be caught too.
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "sync.py").write_text(
        "def refresh():\n    from protection.membership import refresh_membership\n    import pyVmomi\n"
    )
    assert [str(i) for i in layer_violations(tmp_path)] == ["inventory/sync.py:2: imports protection.membership"]
    assert [str(i) for i in vsphere_imports_outside_the_door(tmp_path)] == ["inventory/sync.py:3: imports pyVmomi"]
