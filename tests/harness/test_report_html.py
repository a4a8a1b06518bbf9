"""The HTML pages (harness.reports.pages): roadmap page, one page per criterion, the link into asv's index.

These check what the templates render from the fixture history; tests/harness/test_html_browser.py checks
in a real browser that the plots draw and that nothing is fetched from outside the html folder.
"""

import html
import json
import re
import urllib.parse

import pytest

from harness import roadmap
from harness.roadmap.history import Paths, load_history
from harness.reports import pages, publish
from harness.roadmap.criteria import BINDINGS
from tests.harness.conftest import MACHINE, SHA_A, SHA_B

ASV_INDEX = """<html><body>
    <nav id="nav"><ul>
\t<li id="nav-li-summarylist"><a href="#/summarylist">Benchmark list</a></li>
\t<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>
    </ul></nav></body></html>"""


@pytest.fixture
def history(results_dir, tmp_path):
    return load_history(Paths(tmp_path, tmp_path / "asv.conf.json", results_dir, tmp_path / "html"), MACHINE)


def _specs(page: str) -> list[dict]:
    return [json.loads(html.unescape(s)) for s in re.findall(r"data-spec='([^']*)'", page)]


def test_roadmap_page_links_every_criterion_and_plots_with_flot(history, tmp_path):
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(ASV_INDEX)
    page = pages.write_html(history, html_dir).read_text()
    assert "<svg" not in page and "<polyline" not in page               # no hand-drawn plots
    measured = sum(len(r.checks) for r in history.latest.values())
    assert page.count('class="plot spark"') == measured
    assert all(s["n"] == 2 and s["threshold"] is not None for s in _specs(page))
    for cid in roadmap.all_criteria():
        assert f'href="{pages.criterion_path(cid)}"' in page
        assert (html_dir / pages.criterion_path(cid)).exists()
    assert SHA_A[:8] in page and "NOT MEASURED" in page and "<details><summary>stderr" in page
    for script in ("vendor/jquery-3.3.1/jquery.min.js", "vendor/flot-0.8.3/jquery.flot.js", "harness/plots.js"):
        assert f'src="{script}"' in page and (html_dir / script).exists()
    publish.check_offline(html_dir)                                       # nothing loads from outside


def test_roadmap_is_linked_once_from_asv_index(history, tmp_path):
    html_dir = tmp_path / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(ASV_INDEX)
    pages.write_html(history, html_dir)
    index = (html_dir / "index.html").read_text()
    assert index.count('href="roadmap.html"') == 1
    pages.link_into_index(html_dir)                              # idempotent
    assert (html_dir / "index.html").read_text() == index
    assert index.index("nav-li-regressions") < index.index("nav-li-roadmap")


def test_html_without_index_still_written(history, tmp_path):
    assert pages.write_html(history, tmp_path / "fresh").exists()
    assert not pages.link_into_index(tmp_path / "fresh")


def test_criterion_page_has_values_threshold_verdicts_evidence_and_asv_link(history):
    page = pages.criterion_page(history, "PX.tf_decode_speed")
    check = BINDINGS["PX.tf_decode_speed"].checks[0]
    spec = _specs(page)[0]
    assert spec["threshold"] == check.threshold and spec["threshold_text"] == check.threshold_text
    # fixture: decode ratio 1.2 (PASS) at a1a1a1a1, then 0.8 (FAIL) at b2b2b2b2
    assert spec["points"] == [[0, 1.2, "PASS", SHA_A[:8]], [1, 0.8, "FAIL", SHA_B[:8]]]
    assert spec["colors"]["PASS"] != spec["colors"]["FAIL"]
    assert check.evidence.value in page and check.threshold_text in html.unescape(page)
    link = "../index.html#bench_throughput.Throughput.track_tf_over_flax?machine=harness-host&p-phase='decode'"
    assert f'href="{link}"' in html.unescape(page)


def test_asv_graph_url_follows_asv_hash_format():
    check = next(c for b in BINDINGS.values() for c in b.checks if len(c.params) >= 2)
    url = pages.asv_graph_url(check, "my host")
    location, query = url.split("#", 1)[1].split("?", 1)
    assert location == check.benchmark and location in url
    # asv.js parse_hash_string: split on & and =, decodeURIComponent each part
    parts = [tuple(urllib.parse.unquote(x) for x in kv.split("=")) for kv in query.split("&")]
    assert parts == [("machine", "my host")] + [(f"p-{k}", repr(v)) for k, v in check.params]


def test_not_measured_criterion_page_says_why(history):
    cid = next(c for c, r in history.latest.items() if r.not_measured_by_design)
    page = pages.criterion_page(history, cid)
    assert "NOT MEASURED" in page and history.latest[cid].reason in html.unescape(page)
    assert "data-spec" not in page


def test_failed_to_run_stderr_is_escaped(history):
    page = pages.criterion_page(history, "P0.synthetic_validation")
    assert "stderr of the latest run" in page and "layers.1.ffn.gate.bias" in page
    assert "<script>" not in page.split("</head>")[1]                # autoescaped templates
