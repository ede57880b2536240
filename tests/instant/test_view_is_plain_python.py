"""instant.view is plain Python like the storage engine it reads: no Django (so a served point does
not depend on the web application being importable, configured or up) and, of the product, only
vault.engine; a test of the running code and of the source, so a lazy import inside a function counts."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.instant.conftest import ROOT

ENGINE = "vault.engine"


def test_serving_a_point_imports_no_django() -> None:
    code = (
        "import sys, instant.view.serve, instant.nfs; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_view_imports_only_the_storage_engine_of_the_product() -> None:
    product = {"accounts", "alerts", "api", "audit", "config", "dashboard", "inventory", "jobs", "lib",
               "protection", "recovery", "reports", "teams", "vault", "django", "tools", "tests"}  # fmt: skip
    found = []
    for path in [*(ROOT / "instant" / "view").glob("*.py"), ROOT / "instant" / "nfs.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]  # `from vault import engine`: vault.engine
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in product and not n.startswith(ENGINE)]
    assert found == []
