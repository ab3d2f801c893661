"""notebooks/ablations.ipynb runs headless end to end (nbclient) on the tiny config, so that it
cannot rot: its parameters cell is replaced, every other cell runs as a user runs it."""

import json
import os

import nbclient
import nbformat
import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "ablations.ipynb")
VARIANTS = ("default", "no_fit", "no_sym")
TINY_PARAMETERS = """
CONFIG = "tiny"
VARIANTS = {variants!r}
TOTAL_STEPS = 8
EVAL_EVERY = 4
EVAL_EXAMPLES = 6
DATA_DIR = {data_dir!r}
WORK_ROOT = {work_root!r}
REPO_URL = ""
"""


def _outputs(cell, kind):
    return [o for o in cell.get("outputs", []) if kind in o.get("data", {})]


@pytest.mark.slow
def test_ablations_notebook_runs_on_tiny(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "the notebook needs one cell tagged 'parameters'"
    work_root = str(tmp_path / "runs")
    parameters[0].source = TINY_PARAMETERS.format(
        variants=list(VARIANTS), data_dir=str(tmp_path / "tfds"), work_root=work_root)

    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test (CellExecutionError)

    # Every run trained to the end and logged its val evaluations.
    for variant in VARIANTS:
        with open(os.path.join(work_root, f"{variant}_8", "metrics.jsonl")) as f:
            evals = [r for r in map(json.loads, f) if r["stage"] == "eval"]
        assert [r["step"] for r in evals] == [4, 8], variant
    # The table: a row per run and the constant skeleton.
    tables = [o["data"]["text/markdown"] for c in notebook.cells
              for o in _outputs(c, "text/markdown")]
    assert len(tables) == 1
    rows = tables[0].splitlines()
    assert len(rows) == 2 + len(VARIANTS) + 1
    for variant, row in zip(VARIANTS, rows[2:]):
        assert row.startswith(f"| {variant} | 8 |") and "nan" not in row
    assert rows[-1].startswith("| constant standing skeleton")
    # The curves and the panels are drawn.
    figures = sum(len(_outputs(c, "image/png")) for c in notebook.cells)
    assert figures == 2
