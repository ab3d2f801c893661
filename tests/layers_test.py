"""The import direction: entry points -> builders -> library, never back."""

import ast
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# Package -> the top-level packages it must not import (at module level or inside a function).
FORBIDDEN = {"maskpose_jax": ("data_builders", "experiments", "benchmarks", "tests"),
             "data_builders": ("experiments", "benchmarks", "tests")}


def _imported(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_imports_a_layer_above_it():
    bad = []
    for package, above in FORBIDDEN.items():
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name.endswith("_test.py"):
                continue  # a package's own tests may use the layers above to check it
            bad += [f"{path.relative_to(REPO)} imports {name}"
                    for name in sorted(_imported(path) & set(above))]
    assert not bad, bad


def test_the_library_loads_without_the_builders():
    """Importing every library module pulls in no builder module (a check of the walk above)."""
    modules = sorted(p.stem for p in (REPO / "maskpose_jax").glob("*.py") if p.stem != "__init__")
    code = ("import sys\n" + "".join(f"import maskpose_jax.{m}\n" for m in modules) +
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'data_builders'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.stdout.strip() == "[]", out.stdout
