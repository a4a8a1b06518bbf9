"""The markdown report and the summary table (the HTML pages: test_report_html.py)."""

import pytest

from harness.reports import markdown
from harness.roadmap.history import History, Paths, load_history
from tests.harness.conftest import MACHINE


@pytest.fixture
def history(results_dir, tmp_path):
    return load_history(Paths(tmp_path, tmp_path / "asv.conf.json", results_dir, tmp_path / "html"), MACHINE)


def test_markdown(history, tmp_path):
    path = markdown.write_markdown(history, tmp_path / "report" / "roadmap.md")
    text = path.read_text()
    assert "| milestone" in text and "| criterion" in text and "| evidence" in text
    assert "b2b2b2b2" in text and "FAILED-TO-RUN" in text and "EXTRAPOLATION" in text
    assert "## Regressions against commit `a1a1a1a1`" in text and "PX.tf_decode_speed verdict: PASS" in text
    assert "layers.1.ffn.gate.bias" in text                       # stderr of the failed benchmark
    assert "**P0.env_cuda**" in text and "needs a GPU" in text
    assert "## Not delivered, and what is missing" in text and "**P0.env_conda_tf**" in text
    assert "## Progress by phase" in text
    assert "Milestone success rate (QA.milestone_success_rate, excluded from its own count): " in text


def _row(text, needle):
    return next(line for line in text.splitlines() if needle in line)


def test_markdown_milestone_status_and_evidence_only_with_a_value(history, tmp_path):
    older = History(history.machine, history.commits[:1], history.dates[:1], history.verdicts[:1])
    text = markdown.render(older)
    assert "measurable part complete (1 not measurable here)" in _row(text, "| M0 ")
    assert _row(text, "| M1 ").split("|")[-2].strip() == "complete"
    assert _row(text, "| milestone_phase_0 ").split("|")[-2].strip() == "no"
    # At b2b2b2b2 coverage was skipped: the row says NOT MEASURED, rests on no evidence, and the reason
    # the benchmark gave is shown in the report.
    text = markdown.render(history)
    row = _row(text, "| QA.coverage")
    assert "NOT MEASURED" in row and "MEASURED |" not in row.replace("NOT MEASURED", "")
    assert "no green test run recorded for this commit" in text
    suite = _row(text, "| P1.synthetic_tests ")
    assert "NOT MEASURED" in suite and suite.split("|")[6].strip() == "—"


def test_summary_table(history):
    text = markdown.summary_table(history)
    assert "FAILED-TO-RUN bench_equivalence.Equivalence.track_max_abs_logits_error: ValueError" in text
    assert "REGRESSION PX.tf_decode_speed" in text and "not measured by design" in text
    assert ("NOT MEASURED QA.coverage: track_test_coverage: SKIPPED: no green test run recorded for this commit"
            in text)
    undelivered = _row(text, "NOT DELIVERED (counted as not met; ")
    assert "P0.env_conda_tf" in undelivered and "P0.jupyter_workflow" not in undelivered  # the notebook is delivered
    # The data pipeline did not run at b2b2b2b2: its a1a1a1a1 value stands in, stale, so no check is left unrun.
    assert "NOT MEASURED, not run at this commit" not in text and "stale values" in text
    coverage_row = _row(text, "QA.coverage: track_test_coverage")
    assert "NOT MEASURED" in coverage_row and " MEASURED " not in coverage_row.replace("NOT MEASURED", "")


def test_every_report_marks_stale_values_with_their_commit(results_dir, tmp_path):
    """b2b2b2b2 did not run the data pipeline: its verdict uses a1a1a1a1's value, marked stale everywhere."""
    import argparse

    from harness.roadmap.history import load_history, paths_for

    paths = paths_for(argparse.Namespace(config=str(tmp_path / "asv.conf.json"), results_dir=str(results_dir)))
    history = load_history(paths, "harness-host")
    stale = "stale: measured at a1a1a1a1"
    table = markdown.summary_table(history)
    assert any("P4.data_throughput" in line and stale in line for line in table.splitlines())
    md = markdown.render(history)
    assert any("P4.data_throughput" in line and stale in line for line in md.splitlines())
    assert any("track_tf_over_flax[phase=prefill]" in line and "b2b2b2b2" in line and "stale" not in line
               for line in md.splitlines())
    from harness.reports import pages

    page = pages.roadmap_page(history)
    assert stale in page and "(stale)" in page
    assert "stale: measured at a1a1a1a1" in pages.criterion_page(history, "P4.data_throughput")


def test_a_criterion_without_a_deciding_value_shows_no_evidence(history):
    """QA.automated_checks at b2b2b2b2: the test record is missing (NaN) while the tool checks have values.
    Were it NOT MEASURED, its row must not borrow the MEASURED label of the checks that have one."""
    import dataclasses

    from harness.roadmap.validate import Verdict

    res = history.latest["QA.automated_checks"]
    assert any(c.value is not None for c in res.checks) and any(c.value is None for c in res.checks)
    assert markdown._criterion_evidence(res) == "MEASURED"                      # FAIL rests on measured checks
    unmeasured = dataclasses.replace(res, verdict=Verdict.NOT_MEASURED)
    assert markdown._criterion_evidence(unmeasured) == "—"
