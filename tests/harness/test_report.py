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


def test_every_report_marks_stale_values_with_their_commit(results_dir, tmp_path):
    """b2b2b2b2 did not run the data pipeline: its verdict uses a1a1a1a1's value, marked stale everywhere."""
    from harness import report
    from harness.cli import load_history, paths_for
    import argparse

    paths = paths_for(argparse.Namespace(config=str(tmp_path / "asv.conf.json"), results_dir=str(results_dir)))
    history = load_history(paths, "harness-host")
    stale = "stale: measured at a1a1a1a1"
    table = report.summary_table(history)
    assert any("P4.data_throughput" in line and stale in line for line in table.splitlines())
    md = report.markdown(history)
    assert any("P4.data_throughput" in line and stale in line for line in md.splitlines())
    assert any("track_tf_over_flax[phase=prefill]" in line and "b2b2b2b2" in line and "stale" not in line
               for line in md.splitlines())
    from harness import report_html

    page = report_html.roadmap_page(history)
    assert stale in page and "(stale)" in page
    assert "stale: measured at a1a1a1a1" in report_html.criterion_page(history, "P4.data_throughput")
