"""The Jupyter workflow: notebooks/criterion_history.ipynb runs headless and plots a criterion over commits.

Executed with nbclient on an ipykernel kernel, against the fixture results of tests/harness (two
commits, PX.tf_decode_speed PASS at 1.2 then FAIL at 0.8), so it takes seconds and fails when the
notebook errors, plots nothing or plots the wrong numbers.
"""

import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "criterion_history.ipynb"
FIXTURE_RESULTS = ROOT / "tests" / "harness" / "fixtures" / "results"


def run_notebook(criterion, results_dir=FIXTURE_RESULTS):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = f"RESULTS_DIR = {str(results_dir)!r}\nMACHINE = 'harness-host'\nCRITERION = {criterion!r}"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def outputs(nb, kind):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "text" and out.get("name") == "stdout":
                yield out["text"]
            elif kind == "png" and "image/png" in out.get("data", {}):
                yield base64.b64decode(out["data"]["image/png"])


def test_notebook_plots_the_criterion_value_per_commit_with_its_threshold():
    nb = run_notebook("PX.tf_decode_speed")
    text = "".join(outputs(nb, "text"))
    assert "2 recorded commit(s)" in text
    assert "| a1a1a1a1 |" in text and "| b2b2b2b2 |" in text and "PASS" in text and "FAIL" in text
    assert "plotted 2 point(s): [('a1a1a1a1', 1.2), ('b2b2b2b2', 0.8)]; threshold 1" in text
    (png,) = list(outputs(nb, "png"))
    assert png.startswith(b"\x89PNG") and len(png) > 5000  # a real rendered figure, not an empty canvas


def test_notebook_stops_on_a_criterion_it_cannot_plot():
    with pytest.raises(CellExecutionError, match="unknown criterion 'P9.nope'"):
        run_notebook("P9.nope")
    with pytest.raises(CellExecutionError, match="is not measured here"):
        run_notebook("P3.scale_64_gpus")


def test_notebook_plots_a_roll_up_and_names_what_is_not_delivered():
    """QA.milestone_success_rate has no benchmark: the notebook plots its derived value; a NOT DELIVERED
    criterion stops it with that verdict and its reason."""
    text = "".join(outputs(run_notebook("QA.milestone_success_rate"), "text"))
    assert "gating check: success_rate > 0.95" in text
    assert re.search(r"\| a1a1a1a1 \|\s+0\.930233\s+\| FAIL", text), text  # 40 of 43 met (tabulate drops trailing 0s)
    with pytest.raises(CellExecutionError, match=r"is not measured here \(NOT DELIVERED\): no conda environment"):
        run_notebook("P0.env_conda_tf")


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
