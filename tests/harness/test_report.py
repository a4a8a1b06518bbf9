"""The markdown report and the summary table (the HTML pages: test_report_html.py)."""

import pytest

from harness import report
from harness.cli import Paths, load_history
from tests.harness.conftest import MACHINE


@pytest.fixture
def history(results_dir, tmp_path):
    return load_history(Paths(tmp_path, tmp_path / "asv.conf.json", results_dir, tmp_path / "html"), MACHINE)


def test_markdown(history, tmp_path):
    path = report.write_markdown(history, tmp_path / "report" / "roadmap.md")
    text = path.read_text()
    assert "| milestone" in text and "| criterion" in text and "| evidence" in text
    assert "b2b2b2b2" in text and "FAILED-TO-RUN" in text and "EXTRAPOLATION" in text
    assert "## Regressions against commit `a1a1a1a1`" in text and "PX.tf_decode_speed verdict: PASS" in text
    assert "layers.1.ffn.gate.bias" in text                       # stderr of the failed benchmark
    assert "**P3.scale_64_gpus**" in text and "needs 64 GPUs" in text
    assert "## Progress by phase" in text


def test_summary_table(history):
    text = report.summary_table(history)
    assert "FAILED-TO-RUN bench_equivalence.Equivalence.track_max_abs_logits_error: ValueError" in text
    assert "REGRESSION PX.tf_decode_speed" in text and "not measured by design" in text
