"""Progress tracker: implementation tasks (``harness.qa.tasks``, ``harness/qa/tasks.toml``) against the
roadmap's milestones.

A milestone is complete only when both hold:

- every task attached to it is done (or cancelled), and
- its criteria pass: every one of them is PASS in the recorded results, by the rule the reports use
  (``harness.roadmap.validate.tally``, ``MilestoneProgress.complete``). A criterion NOT MEASURED by design (``harness.roadmap.criteria``
  binds it to no benchmark) never passes, so it blocks completion too; when it is all that is left,
  the state says "measurable part complete (n not measurable here)". A criterion NOT DELIVERED (the
  spec asks for it, the project does not build it) counts as not met.

Verdicts are a plain mapping ``{criterion_id: "PASS" | "FAIL" | "FAILED-TO-RUN" | "NOT MEASURED" |
"NOT DELIVERED"}``
so the tracker is testable without asv results; ``main`` reads them from the latest recorded results.

CLI (``python -m harness progress``): ``progress [--tasks TOML] [--verdicts JSON] [--out MD]
[--machine NAME] [--config asv.conf.json]``; prints the markdown dashboard. Exit 0, or 2 when the
tasks file is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from tabulate import tabulate

from harness import roadmap
from harness.qa.tasks import TASKS_PATH, Status, Task, TasksError, consistency_warnings, load_tasks, ready_tasks
from harness.roadmap.validate import MilestoneProgress, Verdict, tally


@dataclass(frozen=True)
class MilestoneState:
    """A milestone's tasks, its criteria's verdict counts (``harness.roadmap.validate.MilestoneProgress``), and
    whether it is complete."""

    milestone: roadmap.Milestone
    tasks_closed: int
    tasks_total: int
    started: bool
    blocked: bool
    criteria: MilestoneProgress
    failing: tuple[str, ...]

    @property
    def passed(self) -> int:
        """Criteria that PASS."""
        return self.criteria.passed

    @property
    def measurable(self) -> int:
        """Criteria that can have a value here (all but those NOT MEASURED by design)."""
        return self.criteria.measurable

    @property
    def by_design(self) -> int:
        """Criteria NOT MEASURED by design."""
        return self.criteria.not_measured_by_design

    @property
    def not_delivered(self) -> int:
        """Criteria NOT DELIVERED (the spec asks for them, the project does not build them): not met."""
        return self.criteria.not_delivered

    @property
    def tasks_done(self) -> bool:
        """Every attached task is done or cancelled (vacuously true with no tasks)."""
        return self.tasks_closed == self.tasks_total

    @property
    def criteria_pass(self) -> bool:
        """Every criterion PASSes, by ``harness.roadmap.validate``'s rule (``MilestoneProgress.complete``): none is left
        failing, unmeasured, NOT MEASURED by design or NOT DELIVERED."""
        return self.criteria.complete

    @property
    def complete(self) -> bool:
        """Tasks done and criteria passing."""
        return self.tasks_done and self.criteria_pass

    @property
    def state(self) -> str:
        """One phrase for the dashboard.

        Returns:
            "complete", "blocked", "in progress", "not started", or with the tasks done, what the criteria
            still lack (e.g. "tasks done, criteria failing").
        """
        if self.complete:
            return "complete"
        done = "tasks done" if self.tasks_total else "no tasks"
        if self.tasks_done and self.failing:
            return f"{done}, criteria failing"
        if self.tasks_done and self.not_delivered:
            return f"{done}, {self.not_delivered} not delivered"
        if self.tasks_done and self.criteria.status != "no":
            return f"{done}, {self.criteria.status}"   # "measurable part complete (n not measurable here)"
        if self.tasks_done:
            return f"{done}, criteria not all measured" if self.measurable else f"{done}, no measurable criteria"
        if self.blocked:
            return "blocked"
        return "in progress" if self.started else "not started"


def _verdict(text: object) -> Verdict:
    """A verdict string as ``harness.roadmap.validate.Verdict`` (any case); anything else has no value: NOT MEASURED."""
    try:
        return Verdict(str(text).upper())
    except ValueError:
        return Verdict.NOT_MEASURED


def criteria_progress(milestone: roadmap.Milestone, verdicts: Mapping[str, str],
                      by_design: Collection[str] = ()) -> MilestoneProgress:
    """The verdict counts of ``milestone``'s criteria from verdict strings, by ``harness.roadmap.validate.tally``.

    Args:
        milestone: a roadmap milestone.
        verdicts: {criterion_id: verdict string}; a criterion absent from it counts as unmeasured.
        by_design: ids of criteria NOT MEASURED by design.

    Returns:
        the milestone's MilestoneProgress; an unknown verdict string counts as NOT MEASURED.
    """
    return tally(milestone, {cid: _verdict(v) for cid, v in verdicts.items()}, by_design)


def milestone_states(
    tasks: Sequence[Task],
    verdicts: Mapping[str, str],
    by_design: Collection[str] = (),
    milestones: Sequence[roadmap.Milestone] = roadmap.MILESTONES,
) -> list[MilestoneState]:
    """Each milestone's completion from its tasks and its criteria's verdicts.

    Args:
        tasks: the validated tasks (with the statuses to count: derived ones, see ``harness.qa.task_status``).
        verdicts: {criterion_id: verdict string}; a criterion absent from it counts as unmeasured.
        by_design: ids of criteria NOT MEASURED by design (excluded from the measurable count).
        milestones: the roadmap's milestones.

    Returns:
        one MilestoneState per milestone, in roadmap order.
    """
    out = []
    for m in milestones:
        mine = [t for t in tasks if t.milestone == m.id]
        out.append(MilestoneState(
            milestone=m,
            tasks_closed=sum(t.closed for t in mine),
            tasks_total=len(mine),
            started=any(t.status in (Status.IN_PROGRESS, Status.DONE) for t in mine),
            blocked=any(t.status is Status.BLOCKED for t in mine),
            criteria=criteria_progress(m, verdicts, by_design),
            failing=tuple(c.id for c in m.criteria
                          if c.id not in by_design
                          and _verdict(verdicts.get(c.id)) in (Verdict.FAIL, Verdict.FAILED_TO_RUN)),
        ))
    return out


def _percent(closed: int, total: int) -> str:
    return f"{100 * closed / total:.0f}%" if total else "—"


def dashboard(
    tasks: Sequence[Task],
    verdicts: Mapping[str, str],
    by_design: Collection[str] = (),
    verdict_source: str = "no recorded results",
    derived: Sequence | None = None,
    evidence_source: str = "no recorded test run",
) -> str:
    """The progress dashboard in markdown: totals, phases, milestones, next tasks, warnings.

    Args:
        tasks: the validated tasks, as tasks.toml sets them.
        verdicts: {criterion_id: verdict string} from the latest results ({} when none).
        by_design: ids of criteria NOT MEASURED by design.
        verdict_source: where the verdicts come from, printed under the title.
        derived: ``harness.qa.task_status.derive_all`` of the tasks; when given, the dashboard counts the
            derived statuses and lists the hand-set ones the evidence contradicts.
        evidence_source: where the test outcomes behind ``derived`` come from.

    Returns:
        markdown text.
    """
    if derived is not None:
        from harness.qa.task_status import evidence_lines, with_derived_status

        tasks = with_derived_status(derived)
    states = milestone_states(tasks, verdicts, by_design)
    open_tasks = [t for t in tasks if t.status is not Status.CANCELLED]
    done = sum(t.status is Status.DONE for t in open_tasks)
    lines = [
        "# Implementation progress",
        "",
        f"Verdicts: {verdict_source}.",
        *(evidence_lines(derived, evidence_source) if derived is not None else []),
        "",
        f"- Tasks done: {done}/{len(open_tasks)} ({_percent(done, len(open_tasks))}; cancelled tasks excluded)",
        f"- Milestones complete (tasks done and criteria PASS): {sum(s.complete for s in states)}/{len(states)}",
        "",
        "## Phases",
        "",
    ]
    phase_rows = []
    for phase in [*roadmap.PHASES, None]:
        pid = phase.id if phase else roadmap.CROSS_PHASE
        mine = [t for t in open_tasks if t.phase == pid]
        closed = sum(t.status is Status.DONE for t in mine)
        phase_rows.append([pid, phase.name if phase else "Cross-phase QA and project criteria",
                           f"{closed}/{len(mine)}", _percent(closed, len(mine)),
                           sum(t.status is Status.IN_PROGRESS for t in mine),
                           sum(t.status is Status.BLOCKED for t in mine)])
    lines.append(tabulate(phase_rows, ["phase", "name", "tasks done", "%", "in progress", "blocked"], tablefmt="github"))
    lines += ["", "## Milestones", ""]
    ms_rows = [[s.milestone.id, s.milestone.name, f"{s.tasks_closed}/{s.tasks_total}",
                f"{s.passed}/{s.measurable}" + (f" (+{s.by_design} not measurable here)" if s.by_design else "")
                + (f" (+{s.not_delivered} not delivered)" if s.not_delivered else ""),
                ", ".join(s.failing) or "—", s.state] for s in states]
    lines.append(tabulate(ms_rows, ["milestone", "name", "tasks closed", "criteria PASS", "failing", "state"],
                          tablefmt="github"))
    ready = ready_tasks(tasks)
    lines += ["", "## Ready to start", ""]
    lines += [f"- `{t.id}` ({t.priority.name.lower()}) {t.title}" for t in ready] or ["- none"]
    blocked = [t for t in tasks if t.status is Status.BLOCKED]
    if blocked:
        lines += ["", "## Blocked", "", *[f"- `{t.id}` {t.title}" + (f": {t.note}" if t.note else "") for t in blocked]]
    warnings = consistency_warnings(tasks)
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    return "\n".join(lines) + "\n"


def _recorded_verdicts(config: str, machine: str) -> tuple[dict[str, str], str, str | None]:
    """Verdicts of the latest recorded commit, where from, and that commit; ({}, 'no recorded results (why)', None)."""
    from harness.roadmap.history import load_history, paths_for
    from harness.roadmap.results import ResultsError

    try:
        history = load_history(paths_for(argparse.Namespace(config=config, results_dir=None)), machine)
    except (ResultsError, OSError) as e:
        return {}, f"no recorded results ({e})", None
    verdicts = {cid: r.verdict.value for cid, r in history.latest.items()}
    return verdicts, f"commit {history.commits[-1][:8]} on machine {machine}", history.commits[-1]


def _head_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _test_outcomes(path: str | None, commit: str | None) -> tuple[dict[str, str] | None, str]:
    """Per-test outcomes from ``--tests PATH`` (pytest's JUnit XML, or {node id: outcome} JSON), else the
    recorded run of ``commit``."""
    from harness.qa.task_status import outcomes_from_junit, recorded_outcomes

    if path and path.endswith(".xml"):
        try:
            return outcomes_from_junit(path), path
        except ValueError as e:
            raise TasksError(str(e)) from None
    if path:
        with open(path) as f:
            outcomes = json.load(f)
        if not isinstance(outcomes, dict) or not all(isinstance(v, str) for v in outcomes.values()):
            raise TasksError(f"{path} must hold a JSON object {{test node id: outcome}}")
        return outcomes, path
    if commit is None:
        return None, "no recorded test run (no commit to look it up for)"
    return recorded_outcomes(commit)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI ``python -m harness progress``; returns 0, or 2 when the tasks, verdicts or tests file is invalid.

    Args:
        argv: the options after ``progress`` (``--tasks``, ``--verdicts``, ``--tests``, ``--out``, ...); None
            reads ``sys.argv[1:]``.

    Returns:
        the exit code: 0 when the dashboard was printed (and written), 2 for an invalid input file.
    """
    parser = argparse.ArgumentParser(prog="python -m harness progress", description="Progress dashboard.")
    parser.add_argument("--tasks", default=TASKS_PATH, help="tasks TOML (default: harness/qa/tasks.toml)")
    parser.add_argument("--verdicts", metavar="JSON", help="use {criterion_id: verdict} from this file instead of the results")
    parser.add_argument("--tests", metavar="FILE", help="test outcomes: pytest's --junitxml report, or a JSON {test node "
                        "id: outcome}, instead of the recorded test run of the commit")
    parser.add_argument("--out", metavar="MD", help="also write the dashboard to this file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("--config", default="asv.conf.json", help="asv config locating the results (default asv.conf.json)")
    parser.add_argument("--machine", default="harness-host", help="asv machine name (default harness-host)")
    args = parser.parse_args(argv)
    from harness.qa.task_status import derive_all
    from harness.roadmap.criteria import BINDINGS

    try:
        tasks = load_tasks(args.tasks)
        commit = None
        if args.verdicts:
            with open(args.verdicts) as f:
                verdicts = json.load(f)
            if not isinstance(verdicts, dict):
                raise TasksError(f"{args.verdicts} must hold a JSON object {{criterion_id: verdict}}")
            source = args.verdicts
        else:
            verdicts, source, commit = _recorded_verdicts(args.config, args.machine)
        outcomes, evidence_source = _test_outcomes(args.tests, commit or _head_commit())
    except (TasksError, OSError, json.JSONDecodeError) as e:
        print(f"progress: {e}", file=sys.stderr)
        return 2
    by_design = {cid for cid, b in BINDINGS.items() if b.not_measured is not None}
    text = dashboard(tasks, verdicts, by_design, source, derive_all(tasks, outcomes), evidence_source)
    if args.out:
        from harness.io import write_output

        try:
            write_output(args.out, text, force=args.force)
        except (FileExistsError, IsADirectoryError) as e:
            print(f"progress: {e}", file=sys.stderr)
            return 2
    sys.stdout.write(text)
    return 0
