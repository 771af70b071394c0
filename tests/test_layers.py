"""Dependencies point one way: the typed config is the bottom layer, variants sit on it, resolution joins them,
and none of them pulls in the model or the evaluation loop (so validating a config stays fast and torch-free)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def harness_imports(path: Path) -> set[str]:
    """The harness modules a file imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("harness")}
    return found


def test_config_imports_nothing_of_the_harness_above_it():
    for path in (HARNESS / "config").glob("*.py"):
        above = {m for m in harness_imports(path) if not m.startswith(("harness.config", "harness.errors"))}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_variants_do_not_import_resolution_and_resolution_is_above_both():
    assert not {m for m in harness_imports(HARNESS / "variant.py") if m == "harness.resolve"}
    assert {"harness.variant", "harness.config.validate"} <= harness_imports(HARNESS / "resolve.py")


@pytest.mark.parametrize("statement", [
    "from harness.resolve import resolve; resolve('w_cross_attn', 'small', cli={'eval.judge': 'exact'})",
    "from harness.components import CONNECTORS; list(CONNECTORS)",
])
def test_resolving_a_config_and_listing_components_import_no_torch(statement):
    code = f"import sys; {statement}; print('torch' in sys.modules, 'harness.model' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=HARNESS.parent, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}).stdout
    assert out.split() == ["False", "False"]
