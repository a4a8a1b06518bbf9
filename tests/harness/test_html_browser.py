"""The published HTML history in a real browser (headless Chromium over the DevTools protocol, tests/browser.py).

The pages come from the scratch history (tests/harness/scratch_asv.py: three commits recorded from two
folders, published by ``python -m harness publish``) and are served on 127.0.0.1 as ``asv preview`` does.
Each test asserts that the plots drew their data points, that asv did not fall back to its error page, and
that every request the page made stayed on the local server. Chromium resolves no host name at all, so a
page that needed the internet would also fail to render, as it does offline.

Without chromium these tests skip with a loud reason; under CI (``CI`` set) they fail instead, since
``.ci/run`` installs Debian's chromium package.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings

import pytest

from harness import roadmap
from harness.reports import pages, publish
from tests.browser import Browser, find_chromium, serve
from tests.harness.scratch_asv import MACHINE, REPO

SCREENSHOTS = REPO / ".asv" / "html" / "screenshots"
FLOT_POINTS = """(function (el) {{
    var plot = $(el).data('plot');
    return plot ? plot.getData().map(function (s) {{ return {{label: s.label, data: s.data.map(function (p) {{
        return [p[0], p[1]]; }})}}; }}) : null;
}})({})"""


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        reason = ("BROWSER TESTS NOT RUN: chromium is not installed. Install Debian's package as root "
                  "(`apt-get install chromium`); .ci/run does this before the tests.")
        if os.environ.get("CI"):
            pytest.fail(reason + " Under CI this is a failure, not a skip.")
        warnings.warn(reason)
        pytest.skip(reason)
    b = Browser(executable, width=1600, height=1000)
    yield b
    b.close()


@pytest.fixture(scope="module")
def site(scratch):
    with serve(scratch.html) as base:
        yield base


def _visit(browser, url, ready, base):
    """Open ``url``, wait for ``ready``, and check that every request of the visit stayed on ``base``."""
    first = len(browser.requests)
    page = browser.open(url, ready)
    assert not page.evaluate("window.location.pathname.endsWith('error.html')"), "asv showed its error page"
    outside = [u for u in browser.requests[first:] if not u.startswith(base + "/") and not u.startswith("data:")]
    assert outside == [], f"requests left the machine: {outside}"
    assert browser.requests[first:], "the visit made no request at all"
    return page


def _series(page, selector):
    return page.evaluate(FLOT_POINTS.format(f"$({selector!r})[0]"))


def test_asv_index_renders_offline(browser, site, scratch):
    page = _visit(browser, f"{site}/index.html",
                  "window.$ && $.asv && $.asv.main_json && $('#summarygrid-display .benchmark-container').length",
                  site)
    names = page.evaluate("$('#summarygrid-display .benchmark-container').map(function () "
                          "{ return $(this).attr('href'); }).get()")
    assert f"#{scratch.check.benchmark}" in names
    assert page.evaluate("$.asv.main_json.params.python") == ["%d.%d" % sys.version_info[:2]]
    assert page.evaluate("$('#nav-li-roadmap a').attr('href')") == "roadmap.html"
    page.close()


GRAPH_READY = "window.$ && $('#main-graph').data('plot') && $('#main-graph').data('plot').getData().length"


def test_asv_graph_shows_one_line_through_all_commits(browser, site, scratch):
    page = _visit(browser, f"{site}/{pages.asv_graph_url(scratch.check, MACHINE)}", GRAPH_READY, site)
    lines = [s for s in _series(page, "#main-graph") if len([p for p in s["data"] if p[1] is not None]) > 0]
    assert len(lines) == 1, lines            # the selected parameter: one line, not one per checkout folder
    ys = [p[1] for p in lines[0]["data"] if p[1] is not None]
    assert len(ys) == 3 and all(abs(a - b) < 1e-9 for a, b in zip(ys, scratch.values)), ys
    page.close()


def test_roadmap_and_criterion_pages_plot_values_and_threshold(browser, site, scratch):
    page = _visit(browser, f"{site}/roadmap.html",
                  "window.$ && $('.plot').length && $('.plot').toArray().every(function (e) "
                  "{ return $(e).data('plot'); })", site)
    link = pages.criterion_path(scratch.criterion)
    assert page.evaluate(f"$('a[href=\"{link}\"]').length") == 1
    page.close()

    page = _visit(browser, f"{site}/{link}", "window.$ && $('.plot.full').length && "
                  "$('.plot.full').toArray().every(function (e) { return $(e).data('plot'); })", site)
    links = page.evaluate("$('a.asv-link').map(function () { return $(this).attr('href'); }).get()")
    index = links.index("../" + pages.asv_graph_url(scratch.check, MACHINE))   # the scratch check's section
    series = _series(page, f".plot.full:eq({index})")
    threshold = next(s for s in series if s["label"].startswith("threshold"))
    assert {p[1] for p in threshold["data"]} == {scratch.check.threshold}
    values = next(s for s in series if s["label"] == "value")
    assert [p[1] for p in values["data"]] == pytest.approx(list(scratch.values))
    verdicts = {s["label"]: len(s["data"]) for s in series if s["label"] in ("PASS", "FAIL")}
    assert verdicts == {"PASS": 2, "FAIL": 1}           # values either side of the threshold, coloured
    href = links[index]
    page.close()

    page = _visit(browser, f"{site}/{link.rsplit('/', 1)[0]}/{href}", GRAPH_READY, site)  # follow the link
    assert page.evaluate("$('#title').text().trim()") == scratch.check.benchmark
    page.close()


def test_an_unlocalized_asv_page_is_caught(browser, scratch, tmp_path):
    """The control: asv's own template (CDN loads) is seen reaching out and ends on asv's error page."""
    shutil.copytree(scratch.html, tmp_path / "html")
    shutil.copy(publish.asv_template(), tmp_path / "html" / "index.html")
    with serve(tmp_path / "html") as base:
        first = len(browser.requests)
        page = browser.open(f"{base}/index.html", "window.location.pathname.endsWith('error.html')")
        outside = [u for u in browser.requests[first:] if not u.startswith(base + "/")]
        assert any("code.jquery.com" in u or "cdnjs" in u or "jsdelivr" in u for u in outside), outside
        page.close()


def test_screenshots_for_the_record(browser, site, scratch):
    """PNGs of each page under .asv/html/screenshots (gitignored), for a person to look at."""
    href = json.dumps("../" + pages.asv_graph_url(scratch.check, MACHINE))
    section = (f"$('a.asv-link').filter(function () {{ return $(this).attr('href') === {href}; }})"
               ".closest('section')[0].scrollIntoView()")
    milestone = roadmap.all_criteria()[scratch.criterion][0].id
    shots = {   # name: (url, ready, what to scroll into view first)
        "asv-grid": (f"{site}/index.html", "window.$ && $('#summarygrid-display .benchmark-container').length", ""),
        "asv-graph": (f"{site}/{pages.asv_graph_url(scratch.check, MACHINE)}", GRAPH_READY, ""),
        "roadmap": (f"{site}/roadmap.html", "window.$ && $('.plot').toArray().every(function (e) "
                                            "{ return $(e).data('plot'); })",
                    f"document.getElementById({milestone!r}).scrollIntoView()"),
        "criterion": (f"{site}/{pages.criterion_path(scratch.criterion)}",
                      "window.$ && $('.plot.full').first().data('plot')", section),
    }
    for name, (url, ready, scroll) in shots.items():
        page = _visit(browser, url, ready, site)
        if scroll:
            page.evaluate(scroll)
        path = page.screenshot(SCREENSHOTS / f"{name}.png")
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (name, len(data))
        page.close()
