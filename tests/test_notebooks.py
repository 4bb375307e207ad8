"""Every notebook in notebooks/ runs from top to bottom without an error, and is saved with
the outputs it produces."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def results(cell: nbformat.NotebookNode) -> list[str]:
    """What a code cell shows that does not depend on timing or the machine: its value
    (execute_result), its plots, its printed lines (stdout) and its errors."""
    kinds = []
    for output in cell.outputs:
        if output.output_type == "execute_result":
            kinds.append("execute_result")
        elif output.output_type == "display_data" and "image/png" in output.data:
            kinds.append("image/png")
        elif output.output_type == "stream" and output.name == "stdout":
            kinds.append("stdout")
        elif output.output_type == "error":
            kinds.append("error")
    return kinds


def test_there_is_a_notebook() -> None:
    assert "penguins.ipynb" in [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_and_is_saved_with_its_outputs(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)

    # Saved executed, top to bottom in one session, and not edited since.
    numbers = [cell.execution_count for cell in code_cells(saved)]
    assert numbers == list(range(1, len(numbers) + 1)), "re-run the notebook and save it"

    # Run a copy in memory (the repository is not written), from the notebook's folder as
    # Jupyter does. The kernel must not open windows, and progress goes to the notebook.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("SQLML_PROGRESS", raising=False)
    executed = copy.deepcopy(saved)
    for cell in code_cells(executed):
        cell.outputs = []
        cell.execution_count = None
    client = NotebookClient(
        executed,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError at the first cell that fails

    for cell in code_cells(executed):
        assert "error" not in results(cell), cell.source
    # The saved outputs are those the notebook produces: nothing missing, nothing stale.
    for saved_cell, executed_cell in zip(code_cells(saved), code_cells(executed), strict=True):
        assert results(saved_cell) == results(executed_cell), saved_cell.source
    plots = sum(results(cell).count("image/png") for cell in code_cells(executed))
    assert plots >= 2, "the story needs its plots: an ROC curve and feature importances"
