"""The analysts' notebooks run on the simulator path, and every plot cell draws a picture;
pointed at a live task with no labels yet, the learning-curves notebook says so and shows
the simulator's run.

Notebooks are committed without outputs; here they run in a fresh kernel (nbclient) with
``TIERLINE_API_URL`` and ``TIERLINE_API_KEY`` unset, so they take the simulator path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from api.client import TierlineClient
from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES
from tests.utils.server import ServerProcess

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["learning_curves.ipynb", "policy_comparison.ipynb"]
PLOTTING = ("plt.", ".plot(", ".bar(", ".step(")


def executed(name: str, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """The notebook run in a fresh kernel, with this process's environment."""
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=150,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        env=dict(os.environ),
    ).execute()
    return notebook


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
    notebook = executed(name, monkeypatch)

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


@pytest.fixture
def live_task(fresh_database_url, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A server on a fresh database with a task ``name`` (made on first use), and the
    notebooks' environment pointing at it: ``with live_task("name") as admin``."""

    @contextmanager
    def start(name: str) -> Iterator[TierlineClient]:
        env = {
            "TIERLINE_DATABASE_URL": fresh_database_url(),
            "TIERLINE_ADMIN_KEY": ADMIN_KEY,
            "TIERLINE_ENV": "dev",
        }
        server = ServerProcess(env, log=tmp_path / "server.log").start()
        try:
            admin = TierlineClient(server.url, ADMIN_KEY)
            admin.create_task(name, ["approve", "reject"], features=CLAIMS_FEATURES)
            monkeypatch.setenv("TIERLINE_API_URL", server.url)
            monkeypatch.setenv("TIERLINE_API_KEY", ADMIN_KEY)
            monkeypatch.setenv("TIERLINE_TASK", name)
            yield admin
        finally:
            assert server.stop() == 0

    return start


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_learning_curves_on_a_live_task_with_no_labels_says_so_and_still_draws(
    live_task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A freshly created task has no labels: the notebook failed with a KeyError there."""
    with live_task("fresh"):
        notebook = executed("learning_curves.ipynb", monkeypatch)
    assert "task 'fresh' has no labels yet: showing the simulator's run" in printed(notebook)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_learning_curves_on_a_live_task_labelled_only_at_the_cold_start_says_why_charts_are_empty(
    live_task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every label came before any model: labels, but no suggestion to judge and nothing
    automated. The reliability cell failed on NaN axis limits, the others drew blank axes."""
    with live_task("early") as admin:
        case = {"amount": 120.0, "country": "de", "note": "water damage", "vip": False}
        admin.send_cases("early", [{"features": case}] * 3)
        claims = [admin.claim("early") for _ in range(3)]  # all before any model
        for claimed, label in zip(claims, ("approve", "reject", "approve"), strict=True):
            assert claimed is not None and claimed["case"]["suggestion"] is None
            admin.label(claimed["case"]["id"], label, claimed["lease_id"])
        notebook = executed("learning_curves.ipynb", monkeypatch)
    errors = [
        o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    text = printed(notebook)
    assert "showing the simulator's run" not in text
    assert "nothing automated yet: no region to bound" in text
    assert text.count("no labels with a suggestion yet") == 2
