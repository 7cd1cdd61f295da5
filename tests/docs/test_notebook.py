"""The worked notebook (docs/examples/worked_example.ipynb) runs top to bottom, from a folder that is not
the repository, as a reader runs it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "examples" / "worked_example.ipynb"


@pytest.mark.slow
def test_worked_notebook_runs_from_any_folder(shipped_bundle, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the [test] extra installs nbformat and nbclient")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(NOTEBOOK.parents[2]), os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "store the notebook without outputs (the docs build executes it)"
    )
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert re.search(r"Dice 0\.[89]\d{3}", text) and "areas in cm²: None" in text
    pictures = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(pictures) >= 2, "the film and the masks show themselves"
    assert any(
        "text/html" in o.get("data", {}) and "total_px" in o["data"]["text/html"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
