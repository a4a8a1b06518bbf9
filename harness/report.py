"""Reports from verdicts: ``report/roadmap.md`` (tabulate), the HTML roadmap page beside ``asv publish``'s
output, and the compact table the CLI prints. Only formatting lives here; verdicts come from validate.
"""

from __future__ import annotations

import datetime
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tabulate import tabulate

from harness import roadmap
from harness.criteria import BINDINGS, Check
from harness.validate import (CriterionResult, Regression, Verdict, milestone_progress, phase_progress,
                              regressions)


@dataclass(frozen=True)
class History:
    """Verdicts for consecutive commits of one machine, oldest first."""

    machine: str
    commits: tuple[str, ...]
    dates: tuple[int, ...]
    verdicts: tuple[dict[str, CriterionResult], ...]

    @property
    def latest(self) -> dict[str, CriterionResult]:
        """Verdicts of the newest commit, keyed by criterion id."""
        return self.verdicts[-1]

    def latest_regressions(self) -> list[Regression]:
        """Regressions of the newest commit against the one before it; [] with a single commit."""
        return regressions(self.verdicts[-2], self.verdicts[-1]) if len(self.verdicts) > 1 else []

    def all_regressions(self) -> list[Regression]:
        """Regressions between every pair of consecutive commits, oldest pair first."""
        return [r for a, b in zip(self.verdicts, self.verdicts[1:]) for r in regressions(a, b)]


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _date(js_ms: int) -> str:
    return datetime.datetime.fromtimestamp(js_ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def verdict_rows(verdicts: dict[str, CriterionResult], with_reasons: bool = True,
                 include_by_design: bool = True) -> list[list[str]]:
    """Rows as ``VERDICT_HEADERS``. A one-check criterion is one row; a criterion with several checks gets a
    row with its overall verdict followed by one indented row per check with that check's own verdict."""
    milestone_of = {cid: m for cid, (m, _) in roadmap.all_criteria().items()}
    rows = []
    for cid, res in verdicts.items():
        mid, sha = milestone_of[cid].id, res.commit[:8]
        if res.not_measured_by_design:
            if include_by_design:
                rows.append([mid, cid, res.reason if with_reasons else "—", "—", res.verdict.value, "—", sha])
            continue
        if len(res.checks) == 1:
            chk = res.checks[0]
            rows.append([mid, f"{cid}: {chk.check.label}", _fmt(chk.value), chk.check.threshold_text,
                         res.verdict.value, chk.check.evidence.value, sha])
            continue
        rows.append([mid, cid, "", "all gating checks", res.verdict.value,
                     "+".join(e.value for e in BINDINGS[cid].evidence), sha])
        for chk in res.checks:
            label = f"  └ {chk.check.label}" + ("" if chk.check.gate else " (context)")
            rows.append(["", label, _fmt(chk.value), chk.check.threshold_text, chk.verdict.value,
                         chk.check.evidence.value, ""])
    return rows


VERDICT_HEADERS = ["milestone", "criterion", "measured", "threshold", "verdict", "evidence", "commit"]


def summary_table(history: History) -> str:
    """The compact table the CLI prints: measured criteria per check, plus a count of the rest."""
    latest = history.latest
    rows = [r[:6] for r in verdict_rows(latest, include_by_design=False)]
    by_design = sum(r.not_measured_by_design for r in latest.values())
    counts = {v: sum(r.verdict is v for r in latest.values()) for v in Verdict}
    lines = [tabulate(rows, headers=VERDICT_HEADERS[:6], tablefmt="simple")]
    lines.append(f"\ncommit {history.commits[-1][:8]} on {history.machine}: "
                 + ", ".join(f"{v.value} {n}" for v, n in counts.items())
                 + f" ({by_design} not measured by design; reasons in report/roadmap.md)")
    failed = {chk.check.benchmark: chk.stderr for res in latest.values() for chk in res.checks
              if chk.verdict is Verdict.FAILED_TO_RUN}
    for name, stderr in failed.items():
        last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "no stderr captured")
        lines.append(f"FAILED-TO-RUN {name}: {last.strip()}")
    lines += [f"REGRESSION {r}" for r in history.latest_regressions()]
    return "\n".join(lines)


def _progress_rows(verdicts: dict[str, CriterionResult]) -> tuple[list[list[str]], list[list[str]]]:
    phases = [[p.phase_id, p.name, f"{sum(m.complete for m in p.milestones)}/{len(p.milestones)}",
               f"{p.passed}/{p.measurable}", p.not_measured_by_design, "yes" if p.complete else "no"]
              for p in phase_progress(verdicts)]
    milestones = [[m.milestone_id, m.name, m.passed, m.failed, m.failed_to_run, m.unmeasured,
                   m.not_measured_by_design, "yes" if m.complete else "no"] for m in milestone_progress(verdicts)]
    return phases, milestones


PHASE_HEADERS = ["phase", "name", "milestones complete", "criteria passed / measurable", "not measured by design",
                 "complete"]
MILESTONE_HEADERS = ["milestone", "name", "pass", "fail", "failed to run", "no value", "not measured by design",
                     "complete"]


def markdown(history: History) -> str:
    """``report/roadmap.md``: progress by phase and milestone, verdicts, regressions, and the reasons.

    Checks without a value (FAILED-TO-RUN, NOT MEASURED) get their own section with the captured
    stderr, so a reader can see why a criterion has no number without digging into asv's results.
    """
    latest, sha = history.latest, history.commits[-1]
    phases, milestones = _progress_rows(latest)
    out = [
        "# Roadmap verdicts",
        "",
        f"Commit `{sha[:8]}` ({_date(history.dates[-1])}), machine `{history.machine}`, "
        f"{len(history.commits)} commit(s) of history. Written by `python -m harness report` from asv's results; "
        "nothing here is re-run or assumed. A milestone is complete only when all its measurable criteria PASS; "
        "NOT MEASURED never counts as passed. Evidence: MEASURED (the quantity itself), PROXY (a smaller or "
        "synthetic stand-in), SIMULATION, EXTRAPOLATION (scaled up from a measurement).",
        "",
        "## Progress by phase",
        "",
        tabulate(phases, headers=PHASE_HEADERS, tablefmt="github"),
        "",
        "## Progress by milestone",
        "",
        tabulate(milestones, headers=MILESTONE_HEADERS, tablefmt="github"),
        "",
        "## Verdicts",
        "",
        "A criterion with several checks shows its overall verdict, then each check (└) with its own; "
        "(context) checks are shown but do not decide the verdict.",
        "",
        tabulate(verdict_rows(latest, with_reasons=False), headers=VERDICT_HEADERS, tablefmt="github"),
        "",
    ]
    regs = history.latest_regressions()
    out += ["## Regressions against the previous commit", ""]
    out += [f"- {r}" for r in regs] if regs else ["None." if len(history.commits) > 1 else "No previous commit."]
    out.append("")
    failures = [(cid, c) for cid, r in latest.items() for c in r.checks
                if c.verdict in (Verdict.FAILED_TO_RUN, Verdict.NOT_MEASURED)]
    if failures:
        out += ["## Checks without a value", ""]
        for cid, c in failures:
            out.append(f"### {cid}: {c.check.label} ({c.verdict.value})")
            out.append("")
            out.append(c.reason)
            if c.stderr:
                out += ["", "```", c.stderr.rstrip(), "```"]
            out.append("")
    out += ["## Not measured by design, and why", ""]
    out += [f"- **{cid}** ({roadmap.all_criteria()[cid][1].text}): {r.reason}"
            for cid, r in latest.items() if r.not_measured_by_design]
    out.append("")
    return "\n".join(out)


def write_markdown(history: History, path: str | Path) -> Path:
    """Write ``markdown(history)`` to ``path`` (creating its directory); returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(history))
    return path


# ------------------------------------------------------------------ HTML
_COLORS = {Verdict.PASS: "#2e7d32", Verdict.FAIL: "#c62828", Verdict.FAILED_TO_RUN: "#6a1b9a",
           Verdict.NOT_MEASURED: "#9e9e9e"}


def sparkline(check: Check, points: Sequence[tuple[float | None, Verdict]], width: int = 180, height: int = 40) -> str:
    """Inline SVG: the check's value per commit (dots coloured by verdict) and its threshold (dashed)."""
    values = [v for v, _ in points if v is not None and math.isfinite(v)]
    if not values:
        return '<span class="muted">no values</span>'
    lo, hi = min(values + [check.threshold]), max(values + [check.threshold])
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = 4
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / n if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<line x1="0" x2="{width}" y1="{y(check.threshold):.1f}" y2="{y(check.threshold):.1f}" '
             'stroke="#888" stroke-dasharray="3,3"/>']
    line = [(x(i), y(v)) for i, (v, _) in enumerate(points) if v is not None and math.isfinite(v)]
    if len(line) > 1:
        parts.append('<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + '"/>')
    for i, (v, verdict) in enumerate(points):
        if v is not None and math.isfinite(v):
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{_COLORS[verdict]}">'
                         f'<title>{_fmt(v)} ({verdict.value})</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _badge(verdict: Verdict, text: str | None = None) -> str:
    return (f'<span class="badge" style="background:{_COLORS[verdict]}">'
            f'{html.escape(text or verdict.value)}</span>')


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle;font-size:0.9em}
th{background:#f3f3f3}
.badge{color:#fff;padding:1px 6px;border-radius:3px;font-size:0.85em;white-space:nowrap}
.muted{color:#777}
pre{background:#f7f7f7;padding:6px;max-height:20em;overflow:auto;font-size:0.8em}
"""


def roadmap_html(history: History, max_commits: int = 12) -> str:
    """The HTML roadmap page: per milestone, every check's verdict over the last ``max_commits`` commits.

    Each cell's tooltip carries that commit's reason, and a sparkline shows the trend, so a regression
    can be traced to the commit that introduced it.
    """
    latest = history.latest
    window = range(max(0, len(history.commits) - max_commits), len(history.commits))
    criteria = roadmap.all_criteria()
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Roadmap verdicts</title>",
           f"<style>{_CSS}</style></head><body>",
           '<p><a href="index.html">&larr; asv benchmarks</a></p>',
           "<h1>Roadmap verdicts</h1>",
           f"<p>Latest commit <code>{history.commits[-1][:8]}</code> ({_date(history.dates[-1])}) on machine "
           f"<code>{html.escape(history.machine)}</code>. A milestone is complete only when all its measurable "
           "criteria PASS; NOT MEASURED never counts as passed.</p>"]
    phases, _ = _progress_rows(latest)
    out.append("<h2>Progress by phase</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in PHASE_HEADERS) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in phases]
    out.append("</table>")
    regs = history.latest_regressions()
    if regs:
        out.append("<h2>Regressions</h2><ul>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in regs) + "</ul>")
    commit_heads = "".join(f"<th title='{history.commits[i]}'>{history.commits[i][:8]}</th>" for i in window)
    for milestone in roadmap.MILESTONES:
        out.append(f"<h2>{html.escape(milestone.id)}: {html.escape(milestone.name)}</h2>")
        out.append(f"<table><tr><th>criterion</th><th>check</th><th>threshold</th><th>evidence</th>{commit_heads}"
                   "<th>latest</th><th>trend</th></tr>")
        for crit in milestone.criteria:
            res = latest[crit.id]
            title = f"<b>{crit.id}</b><br>{html.escape(crit.text)}"
            if res.not_measured_by_design:
                cells = "".join(f"<td>{_badge(Verdict.NOT_MEASURED, 'n/m')}</td>" for _ in window)
                out.append(f"<tr><td>{title}</td><td colspan='3' class='muted'>NOT MEASURED: "
                           f"{html.escape(res.reason)}</td>{cells}<td>{_badge(res.verdict)}</td><td></td></tr>")
                continue
            for k, chk in enumerate(res.checks):
                per_commit = [next(c for c in history.verdicts[i][crit.id].checks if c.check == chk.check)
                              for i in range(len(history.commits))]
                cells = "".join(
                    f"<td title='{html.escape(per_commit[i].reason)}'>"
                    f"{_badge(per_commit[i].verdict, _fmt(per_commit[i].value))}</td>" for i in window)
                context = "" if chk.check.gate else " <span class='muted'>(context)</span>"
                detail = ""
                if chk.stderr:
                    detail = f"<details><summary>stderr</summary><pre>{html.escape(chk.stderr)}</pre></details>"
                elif chk.reason:
                    detail = f"<div class='muted'>{html.escape(chk.reason)}</div>"
                first = f"<td rowspan='{len(res.checks)}'>{title}<br>{_badge(res.verdict)}</td>" if k == 0 else ""
                points = [(c.value, c.verdict) for c in per_commit]
                params = " ".join(f"{k}={v}" for k, v in chk.check.params)
                out.append(f"<tr>{first}<td><code>{html.escape(chk.check.benchmark)}</code> {html.escape(params)}"
                           f"{context}<div class='muted'>{html.escape(chk.check.note)}</div>{detail}</td>"
                           f"<td>{html.escape(chk.check.threshold_text)}</td><td>{chk.check.evidence.value}</td>"
                           f"{cells}<td>{_badge(chk.verdict, _fmt(chk.value))}</td>"
                           f"<td>{sparkline(chk.check, points)}</td></tr>")
        out.append("</table>")
    assert set(criteria) == set(latest)
    out.append("</body></html>")
    return "\n".join(out)


_NAV_ID = 'id="nav-li-roadmap"'
_NAV_ITEM = f'<li {_NAV_ID}><a href="roadmap.html">Roadmap verdicts</a></li>'


def link_into_index(html_dir: str | Path) -> bool:
    """Add a "Roadmap verdicts" entry to asv's navigation bar in index.html (idempotent).

    Returns False when there is no index.html (``asv publish`` has not run)."""
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
    """Write ``roadmap.html`` into ``html_dir`` and link it from asv's index.html; returns its path."""
    html_dir = Path(html_dir)
    html_dir.mkdir(parents=True, exist_ok=True)
    path = html_dir / "roadmap.html"
    path.write_text(roadmap_html(history))
    link_into_index(html_dir)
    return path

