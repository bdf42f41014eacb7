"""The analysts' notebooks run on the simulator path, and every plot cell draws a picture.

Notebooks are committed without outputs; here they run in a fresh kernel (nbclient) with
``TIERLINE_API_URL`` and ``TIERLINE_API_KEY`` unset, so they take the simulator path.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["learning_curves.ipynb", "policy_comparison.ipynb"]
PLOTTING = ("plt.", ".plot(", ".bar(", ".step(")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_the_simulator_and_every_plot_cell_draws(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("TIERLINE_API_URL", "TIERLINE_API_KEY", "TIERLINE_TASK"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=150,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        env=dict(os.environ),
    ).execute()

    plots = [c for c in notebook.cells if "plot" in c.metadata.get("tags", [])]
    assert len(plots) >= 4
    for cell in notebook.cells:
        if cell.cell_type == "code" and any(p in cell.source for p in PLOTTING):
            assert cell in plots, f"a plotting cell is not tagged 'plot':\n{cell.source[:200]}"
    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"plot cell drew no image:\n{cell.source[:200]}"
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors
