"""The HTML pages the harness adds beside ``asv publish``'s output.

* ``roadmap.html``: every milestone's criteria, each check's verdict over the recent commits, a trend
  sparkline, and a link to the criterion's own page;
* ``criteria/<criterion id>.html``: one page per criterion: each check's value over every recorded commit
  at full size, the threshold drawn as a line, points coloured by verdict, the evidence kind, a table of the
  values with the reasons, and a link to asv's own graph of the same benchmark and parameters.

Pages are rendered from the jinja2 templates in ``harness/reports/templates``; the plots are drawn by asv's own
plotting library, flot (vendored with jQuery, see ``harness.reports.publish``), through ``harness/reports/www/plots.js``,
which reads each plot's data from the page. Nothing is fetched from outside the html folder.
Verdicts come from ``harness.roadmap.validate``; the text formatting shared with the markdown report from
``harness.reports.markdown``.
"""

from __future__ import annotations

import math
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness import roadmap
from harness.reports import publish
from harness.reports.markdown import PHASE_HEADERS, format_date, format_value, progress_rows
from harness.roadmap.criteria import DERIVED, Check, Comparator
from harness.roadmap.history import History
from harness.roadmap.validate import CheckResult, Verdict

TEMPLATES = Path(__file__).parent / "templates"
STATIC = ("plots.js", "harness.css")          # from harness/reports/www into <html_dir>/harness/
CRITERIA_DIR = "criteria"
COLORS = {Verdict.PASS: "#2e7d32", Verdict.FAIL: "#c62828", Verdict.FAILED_TO_RUN: "#6a1b9a",
          Verdict.NOT_MEASURED: "#9e9e9e", Verdict.NOT_DELIVERED: "#e65100"}

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["fmt"] = format_value
_ENV.globals["colors"] = {v.value: c for v, c in COLORS.items()}


def asv_param(value: object) -> str:
    """A parameter value as asv's index.json spells it: ``repr()`` of the Python value (``'prefill'``, ``64``)."""
    return repr(value)


def asv_graph_url(check: Check, machine: str) -> str:
    """The fragment of asv's index.html showing ``check``'s benchmark at its parameters on ``machine``.

    asv's ``asv.js`` (``parse_hash_string``) reads ``#<benchmark>?key=value&...`` with URI-encoded parts;
    ``graphdisplay.js`` takes ``machine`` as a global parameter and ``p-<param name>`` as the selected value
    of a benchmark parameter, compared with the repr strings of index.json.

    Args:
        check: the check whose benchmark and parameter values select the graph.
        machine: the asv machine name the results were recorded on.

    Returns:
        a relative URL, ``index.html#<benchmark>?machine=...&p-<param>=...``, URI-encoded as asv.js expects.
    """
    query = [("machine", machine)] + [(f"p-{k}", asv_param(v)) for k, v in check.params]
    # encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone; quote() with this safe set matches it
    enc = lambda s: urllib.parse.quote(str(s), safe="-_.!~*'()")  # noqa: E731
    return f"index.html#{enc(check.benchmark)}?" + "&".join(f"{enc(k)}={enc(v)}" for k, v in query)


def criterion_path(criterion_id: str) -> str:
    """The criterion page's path relative to the html folder (ids are letters, digits, dots, underscores)."""
    return f"{CRITERIA_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', criterion_id)}.html"


@dataclass(frozen=True)
class Point:
    """One commit's result for one check, as the pages show it."""

    index: int
    commit: str
    date: str
    result: CheckResult | None

    @property
    def value(self) -> float | None:
        """The value when it is a finite number, else None (plots skip it)."""
        v = self.result.value if self.result else None
        return v if v is not None and math.isfinite(v) else None

    @property
    def verdict(self) -> Verdict:
        """This commit's verdict for the check (NOT MEASURED when the check did not exist then)."""
        return self.result.verdict if self.result else Verdict.NOT_MEASURED


def check_history(history: History, criterion_id: str, check: Check) -> list[Point]:
    """``check``'s result at every recorded commit, oldest first.

    Args:
        history: the verdicts of every recorded commit.
        criterion_id: the criterion the check belongs to (e.g. ``"P1.mla_cache"``).
        check: the check to follow.

    Returns:
        one Point per commit of ``history``; its ``result`` is None where the check was not recorded.
    """
    points = []
    for i, (sha, date, verdicts) in enumerate(zip(history.commits, history.dates, history.verdicts)):
        res = verdicts.get(criterion_id)
        found = next((c for c in res.checks if c.check == check), None) if res else None
        points.append(Point(i, sha, format_date(date), found))
    return points


def plot_spec(check: Check, points: list[Point]) -> dict:
    """The data plots.js draws: values per commit with their verdict colour, and the threshold line.

    Args:
        check: the check plotted (threshold, tolerance, unit).
        points: its results per commit, as ``check_history`` gives them (or a window of them).

    Returns:
        a JSON-ready dict: ``points`` ([index, value, verdict, short sha], finite values only), ``labels``,
        ``n``, the threshold with its text, tolerance (WITHIN checks only) and unit, and the verdict colours.
    """
    return {
        "points": [[p.index, p.value, p.verdict.value, p.commit[:8]] for p in points if p.value is not None],
        "labels": [[p.index, p.commit[:8]] for p in points],
        "n": len(points),
        "threshold": check.threshold,
        "tolerance": check.tolerance if check.comparator is Comparator.WITHIN else None,
        "threshold_text": check.threshold_text,
        "unit": check.unit,
        "colors": {v.value: c for v, c in COLORS.items()},
    }


def _render(template: str, **context: object) -> str:
    return _ENV.get_template(template).render(**context)


def roadmap_page(history: History, max_commits: int = 12) -> str:
    """The roadmap page: per milestone, every check's verdict over the last ``max_commits`` commits.

    Args:
        history: the verdicts of every recorded commit; the newest gives the page's verdicts.
        max_commits: how many of the newest commits each check's sparkline shows.

    Returns:
        the rendered HTML of ``roadmap.html``.
    """
    latest = history.latest
    window = list(range(max(0, len(history.commits) - max_commits), len(history.commits)))
    milestones = []
    for milestone in roadmap.MILESTONES:
        rows = []
        for crit in milestone.criteria:
            res = latest[crit.id]
            checks = []
            for chk in res.checks:
                points = check_history(history, crit.id, chk.check)
                shown = [points[i] for i in window]
                checks.append({"latest": chk, "points": shown, "spec": plot_spec(chk.check, shown),
                               "params": " ".join(f"{k}={v}" for k, v in chk.check.params)})
            rows.append({"criterion": crit, "result": res, "checks": checks, "page": criterion_path(crit.id)})
        milestones.append({"milestone": milestone, "rows": rows})
    phases, _ = progress_rows(latest)
    return _render("roadmap.html.j2", root="", history=history, latest_sha=history.commits[-1][:8],
                   latest_date=format_date(history.dates[-1]), phase_headers=PHASE_HEADERS, phases=phases,
                   regressions=history.latest_regressions(), window=[history.commits[i] for i in window],
                   milestones=milestones)


def criterion_page(history: History, criterion_id: str) -> str:
    """One criterion's page: every check over every commit, threshold line, verdicts, evidence, asv link.

    Args:
        history: the verdicts of every recorded commit.
        criterion_id: the criterion the page shows; it must be in the roadmap and in the latest verdicts.

    Returns:
        the rendered HTML, meant for ``criterion_path(criterion_id)`` (its links are relative to that folder).
    """
    milestone, crit = roadmap.all_criteria()[criterion_id]
    res = history.latest[criterion_id]
    checks = []
    for chk in res.checks:
        points = check_history(history, criterion_id, chk.check)
        checks.append({"latest": chk, "points": points, "spec": plot_spec(chk.check, points),
                       # a roll-up (DERIVED) is computed by the harness, so asv has no graph of it
                       "asv_url": None if chk.check.benchmark in DERIVED
                       else "../" + asv_graph_url(chk.check, history.machine),
                       "params": ", ".join(f"{k}={v}" for k, v in chk.check.params)})
    return _render("criterion.html.j2", root="../", history=history, milestone=milestone, criterion=crit,
                   result=res, checks=checks)


_NAV_ID = 'id="nav-li-roadmap"'
_NAV_ITEM = f'<li {_NAV_ID}><a href="roadmap.html">Roadmap verdicts</a></li>'


def link_into_index(html_dir: str | Path) -> bool:
    """Add a "Roadmap verdicts" entry to asv's navigation bar in index.html (idempotent).

    Without asv's navigation bar (a changed template) the link goes in a paragraph after ``<body>``.

    Args:
        html_dir: the folder ``asv publish`` wrote.

    Returns:
        True when index.html links the roadmap (now or already); False when there is no index.html
        (``asv publish`` has not run).
    """
    index = Path(html_dir) / "index.html"
    if not index.exists():
        return False
    text = index.read_text()
    if _NAV_ID in text:
        return True
    anchor = '<li id="nav-li-regressions">'
    at = text.find(anchor)
    if at >= 0:
        end = text.find("</li>", at) + len("</li>")
        text = text[:end] + "\n\t" + _NAV_ITEM + text[end:]
    else:
        at = text.find("<body>") + len("<body>")
        text = text[:at] + f'\n<p><a {_NAV_ID} href="roadmap.html">Roadmap verdicts</a></p>' + text[at:]
    index.write_text(text)
    return True


def write_html(history: History, html_dir: str | Path) -> Path:
    """Write ``roadmap.html`` and every criterion page into ``html_dir``, with the scripts they load, and
    link the roadmap from asv's index.html.

    Args:
        history: the verdicts of every recorded commit.
        html_dir: the output folder (asv's html folder, so the asv links resolve); created when missing.
            Existing roadmap and criterion pages are replaced: they are generated, never edited.

    Returns:
        the path of the written ``roadmap.html``.
    """
    html_dir = Path(html_dir)
    (html_dir / CRITERIA_DIR).mkdir(parents=True, exist_ok=True)
    publish.copy_vendor(html_dir)
    (html_dir / "harness").mkdir(exist_ok=True)
    for name in STATIC:
        shutil.copyfile(publish.WWW / name, html_dir / "harness" / name)
    for cid in history.latest:
        (html_dir / criterion_path(cid)).write_text(criterion_page(history, cid))
    path = html_dir / "roadmap.html"
    path.write_text(roadmap_page(history))
    link_into_index(html_dir)
    return path
