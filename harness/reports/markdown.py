"""Reports from verdicts: ``report/roadmap.md`` (tabulate) and the compact table the CLI prints. Only
formatting lives here; verdicts come from validate. The HTML pages are ``harness.reports.pages``'s.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

from tabulate import tabulate

from harness import roadmap
from harness.roadmap.criteria import Evidence
from harness.roadmap.history import History
from harness.roadmap.validate import (NOT_RUN_REASON, CheckResult, CriterionResult, Verdict, milestone_progress,
                                      phase_progress, success_rate)


def format_value(value: float | None) -> str:
    """A measured value as the reports print it: 4 significant digits, an exponent outside [1e-3, 1e5), "—" for
    no value."""
    if value is None:
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def format_date(js_ms: int) -> str:
    """asv's commit date (milliseconds since the epoch) as ``YYYY-MM-DD HH:MM UTC``."""
    return datetime.datetime.fromtimestamp(js_ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def measured_at(checks: Sequence[CheckResult], commit: str) -> str:
    """Where the values of ``checks`` come from: ``commit``'s short hash when measured there, "stale:
    measured at <hash>" for a value from an earlier commit (a benchmark left out of a partial run),
    "—" when none was recorded anywhere. A roll-up's value is computed at ``commit`` itself.

    Args:
        checks: the check results shown in one row.
        commit: the full hash of the evaluated commit.

    Returns:
        the distinct sources, comma-separated, in the order of ``checks``; "—" when there is none.
    """
    where = []
    shas = (c.measured_at or (commit if c.check.evidence is Evidence.DERIVED and c.value is not None else None)
            for c in checks)
    for sha in dict.fromkeys(s for s in shas if s is not None):
        where.append(sha[:8] if sha == commit else f"stale: measured at {sha[:8]}")
    return ", ".join(where) or "—"


def _evidence(chk: CheckResult) -> str:
    """A check's evidence label, or "—" when it has no value: no number, nothing it rests on."""
    return chk.check.evidence.value if chk.value is not None else "—"


def _criterion_evidence(res: CriterionResult) -> str:
    """The evidence labels of the gating checks with a value, each once; "—" when none has one or when the
    verdict itself rests on no value (NOT MEASURED, FAILED-TO-RUN)."""
    if res.verdict in (Verdict.NOT_MEASURED, Verdict.FAILED_TO_RUN):
        return "—"
    labels = [_evidence(c) for c in res.checks if c.check.gate and c.value is not None]
    return "+".join(dict.fromkeys(labels)) or "—"


def verdict_rows(verdicts: dict[str, CriterionResult], with_reasons: bool = True,
                 include_by_design: bool = True) -> list[list[str]]:
    """Rows as ``VERDICT_HEADERS``. A one-check criterion is one row; a criterion with several checks gets a
    row with its overall verdict followed by one indented row per check with that check's own verdict.

    Evidence is shown only where there is a value (a NOT MEASURED row rests on nothing). The commit column
    says where each value was measured, marking values older than the evaluated commit as stale.

    Args:
        verdicts: one commit's ``{criterion id: CriterionResult}``, in roadmap order.
        with_reasons: put a check-less criterion's reason in the "measured" column; False shows "—" (the
            compact CLI table, whose reasons are printed below it).
        include_by_design: keep the criteria that are NOT MEASURED by design.

    Returns:
        the table rows, each a list of ``len(VERDICT_HEADERS)`` strings.
    """
    milestone_of = {cid: m for cid, (m, _) in roadmap.all_criteria().items()}
    rows = []
    for cid, res in verdicts.items():
        mid, sha = milestone_of[cid].id, res.commit
        if not res.checks:  # NOT MEASURED by design, or NOT DELIVERED
            if include_by_design or not res.not_measured_by_design:
                rows.append([mid, cid, res.reason if with_reasons else "—", "—", res.verdict.value, "—", sha[:8]])
            continue
        if len(res.checks) == 1:
            chk = res.checks[0]
            rows.append([mid, f"{cid}: {chk.check.label}", format_value(chk.value), chk.check.threshold_text,
                         res.verdict.value, _evidence(chk), measured_at(res.checks, sha)])
            continue
        rows.append([mid, cid, "", "all gating checks", res.verdict.value, _criterion_evidence(res),
                     measured_at([c for c in res.checks if c.check.gate], sha)])
        for chk in res.checks:
            label = f"  └ {chk.check.label}" + ("" if chk.check.gate else " (context)")
            rows.append(["", label, format_value(chk.value), chk.check.threshold_text, chk.verdict.value,
                         _evidence(chk), measured_at([chk], sha)])
    return rows


VERDICT_HEADERS = ["milestone", "criterion", "measured", "threshold", "verdict", "evidence", "measured at"]


def summary_table(history: History) -> str:
    """The compact table the CLI prints: measured and NOT DELIVERED criteria, a count of the rest, and why
    each criterion that should have a value has none.

    Args:
        history: the verdicts of every recorded commit; the newest is shown.

    Returns:
        the table followed by the count line and one line per unmeasured, failed, stale or regressed item.
    """
    latest = history.latest
    rows = verdict_rows(latest, with_reasons=False, include_by_design=False)
    by_design = sum(r.not_measured_by_design for r in latest.values())
    counts = {v: sum(r.verdict is v for r in latest.values()) for v in Verdict}
    lines = [tabulate(rows, headers=VERDICT_HEADERS, tablefmt="simple")]
    lines.append(f"\ncommit {history.commits[-1][:8]} on {history.machine}: "
                 + ", ".join(f"{v.value} {n}" for v, n in counts.items())
                 + f" ({by_design} not measured by design; reasons in report/roadmap.md)")
    undelivered = [cid for cid, r in latest.items() if r.not_delivered]
    if undelivered:
        lines.append(f"NOT DELIVERED (counted as not met; what is missing is in report/roadmap.md): "
                     f"{', '.join(undelivered)}")
    unvalued = [(cid, c) for cid, r in latest.items() for c in r.checks
                if c.check.gate and c.verdict is Verdict.NOT_MEASURED]
    not_run = [cid for cid, c in unvalued if c.reason.startswith(NOT_RUN_REASON)]
    lines += [f"NOT MEASURED {cid}: {c.check.label}: {c.reason}" for cid, c in unvalued
              if not c.reason.startswith(NOT_RUN_REASON)]
    if not_run:
        lines.append(f"NOT MEASURED, not run at this commit (e.g. filtered by -b): {len(not_run)} checks of "
                     f"{len(set(not_run))} criteria")
    failed = {chk.check.benchmark: chk.stderr for res in latest.values() for chk in res.checks
              if chk.verdict is Verdict.FAILED_TO_RUN}
    for name, stderr in failed.items():
        last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "no stderr captured")
        lines.append(f"FAILED-TO-RUN {name}: {last.strip()}")
    stale = sorted({c.measured_at[:8] for r in latest.values() for c in r.checks if c.stale and c.measured_at})
    if stale:
        lines.append(f"stale values (benchmarks not run at {history.commits[-1][:8]}) come from {', '.join(stale)}")
    lines += [f"{r.label} {r}" for r in history.latest_regressions()]
    return "\n".join(lines)


def progress_rows(verdicts: dict[str, CriterionResult]) -> tuple[list[list[str]], list[list[str]]]:
    """The phase rows (``PHASE_HEADERS``) and milestone rows (``MILESTONE_HEADERS``) of one commit's verdicts."""
    phases = [[p.phase_id, p.name, f"{sum(m.complete for m in p.milestones)}/{len(p.milestones)}",
               f"{p.passed}/{p.measurable}", p.not_measured_by_design, p.not_delivered, p.status]
              for p in phase_progress(verdicts)]
    milestones = [[m.milestone_id, m.name, m.passed, m.failed, m.failed_to_run, m.unmeasured,
                   m.not_measured_by_design, m.not_delivered, m.status] for m in milestone_progress(verdicts)]
    return phases, milestones


PHASE_HEADERS = ["phase", "name", "milestones complete", "criteria passed / measurable", "not measured by design",
                 "not delivered", "complete"]
MILESTONE_HEADERS = ["milestone", "name", "pass", "fail", "failed to run", "no value", "not measured by design",
                     "not delivered", "complete"]


def render(history: History) -> str:
    """``report/roadmap.md``: progress by phase and milestone, verdicts, regressions, and the reasons.

    Checks without a value (FAILED-TO-RUN, NOT MEASURED) get their own section with the captured
    stderr, so a reader can see why a criterion has no number without digging into asv's results.

    Args:
        history: the verdicts of every recorded commit; the newest is reported.

    Returns:
        the Markdown text.
    """
    latest, sha = history.latest, history.commits[-1]
    phases, milestones = progress_rows(latest)
    out = [
        "# Roadmap verdicts",
        "",
        f"Commit `{sha[:8]}` ({format_date(history.dates[-1])}), machine `{history.machine}`, "
        f"{len(history.commits)} commit(s) of history. Written by `python -m harness report` from asv's results; "
        "nothing here is re-run or assumed. A milestone is complete only when every one of its criteria PASSes; "
        "when all criteria with a value pass but some cannot be measured here, it says \"measurable part complete "
        "(n not measurable here)\". NOT MEASURED never counts as passed; NOT DELIVERED (the spec asks for it, "
        "the project does not build it) counts as not met. Evidence: MEASURED (the quantity itself), PROXY (a "
        "smaller or synthetic stand-in), SIMULATION, EXTRAPOLATION (scaled up from a measurement), DERIVED "
        "(computed from the other verdicts); none where there is no value. \"measured at\" names the commit "
        "each value comes from; \"stale\" marks a value recorded at an earlier commit because the benchmark "
        "was not run at this one (a partial run, or the full tier not run).",
        "",
        f"Milestone success rate (QA.milestone_success_rate, excluded from its own count): "
        f"{success_rate(latest, exclude=('QA.milestone_success_rate',))}.",
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
    base = history.baseline_commit
    out += [f"## Regressions against {'commit `' + base[:8] + '`' if base else 'the previous commit'}", ""]
    out += [f"- {'**borderline** ' if r.borderline else ''}{r}" for r in regs] if regs else ["None." if base else "No previous commit."]
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
    out += ["## Not delivered, and what is missing", ""]
    out += [f"- **{cid}** ({roadmap.all_criteria()[cid][1].text}): {r.reason}"
            for cid, r in latest.items() if r.not_delivered] or ["None."]
    out.append("")
    out += ["## Not measured by design, and why", ""]
    out += [f"- **{cid}** ({roadmap.all_criteria()[cid][1].text}): {r.reason}"
            for cid, r in latest.items() if r.not_measured_by_design]
    out.append("")
    return "\n".join(out)


def write_markdown(history: History, path: str | Path) -> Path:
    """Write ``render(history)`` to ``path`` (creating its directory); an existing report is replaced, as it
    is generated from the results and never edited by hand.

    Args:
        history: the verdicts of every recorded commit.
        path: the Markdown file to write, usually ``report/roadmap.md``.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(history))
    return path
