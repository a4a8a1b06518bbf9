"""Markdown and HTML reports, and the link into asv's index.html."""

import pytest

from harness import report
from harness.cli import Paths, load_history
from tests.harness.conftest import MACHINE, SHA_A

ASV_INDEX = """<html><body>
    <nav id="nav"><ul>
\t<li id="nav-li-summarylist"><a href="#/summarylist">Benchmark list</a></li>
\t<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>
    </ul></nav></body></html>"""


@pytest.fixture
def history(results_dir, tmp_path):
    return load_history(Paths(tmp_path, tmp_path / "asv.conf.json", results_dir, tmp_path / "html"), MACHINE)


def test_markdown(history, tmp_path):
    path = report.write_markdown(history, tmp_path / "report" / "roadmap.md")
    text = path.read_text()
    assert "| milestone" in text and "| criterion" in text and "| evidence" in text
    assert "b2b2b2b2" in text and "FAILED-TO-RUN" in text and "EXTRAPOLATION" in text
    assert "## Regressions against the previous commit" in text and "PX.tf_decode_speed verdict: PASS" in text
    assert "layers.1.ffn.gate.bias" in text                       # stderr of the failed benchmark
    assert "**P3.scale_64_gpus**" in text and "needs 64 GPUs" in text
    assert "## Progress by phase" in text


def test_html_page_with_sparklines_and_index_link(history, tmp_path):
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(ASV_INDEX)
    page = report.write_html(history, html_dir).read_text()
    assert page.count("<svg") >= 17 and "stroke-dasharray" in page
    assert SHA_A[:8] in page and "NOT MEASURED" in page and "<details><summary>stderr" in page
    index = (html_dir / "index.html").read_text()
    assert index.count('href="roadmap.html"') == 1
    report.link_into_index(html_dir)                              # idempotent
    assert (html_dir / "index.html").read_text() == index
    assert index.index("nav-li-regressions") < index.index("nav-li-roadmap")


def test_html_without_index_still_written(history, tmp_path):
    assert report.write_html(history, tmp_path / "fresh").exists()
    assert not report.link_into_index(tmp_path / "fresh")


def test_summary_table(history):
    text = report.summary_table(history)
    assert "FAILED-TO-RUN bench_equivalence.Equivalence.track_max_abs_logits_error: ValueError" in text
    assert "REGRESSION PX.tf_decode_speed" in text and "not measured by design" in text


def test_sparkline_handles_no_values():
    from harness.criteria import BINDINGS
    from harness.validate import Verdict
    check = BINDINGS["PX.moe_sparsity"].checks[0]
    assert "no values" in report.sparkline(check, [(None, Verdict.NOT_MEASURED)])
    assert "<circle" in report.sparkline(check, [(1.2, Verdict.PASS)])
