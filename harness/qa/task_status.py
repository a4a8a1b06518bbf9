"""A task's status derived from the evidence bound to it, and how far the hand-kept statuses are off.

A task in ``harness/qa/tasks.toml`` may name its tests (``tests = [...]``: a test file, a test
``path::name`` or a class, selecting every recorded node id equal to it or starting with it followed
by ``::`` or ``[``). Given the per-test outcomes of a recorded run of the whole default suite, the
task's status is derived:

- some selected test failed or errored: ``in_progress`` (the work exists but does not pass);
- every selected test passed (skips aside), but a named test is absent from the run (renamed,
  deselected or not written yet): ``in_progress``;
- every named test is in the run and every selected one passed: ``done``;
- no named test is in the run, or the task names none, or there is no recorded run: no evidence, so
  the hand-set status of ``tasks.toml`` stands (``source = "hand"``). A cancelled task stays
  cancelled: that is a decision, not a measurement.

Only tests are evidence for a task. A criterion's verdict belongs to the asv run of a commit, which
happens after the test run, and criteria already gate the milestones (``harness.roadmap.validate``); a task
("MLA with naive and absorbed caches") is done when its tests pass, its milestone ("KV cache reduced
by 93.3%") when its criteria do.

QA.progress_accuracy ("progress tracking accuracy within 5% of actual completion") is measured as the
share of evidence-covered tasks whose hand-set status disagrees with the derived one
(``progress_disagreement``): how often the hand-kept tracker is wrong where it can be checked.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from tabulate import tabulate

from harness.qa.tasks import Status, Task
from harness.roadmap import testrun
from harness.roadmap.testrun import NOT_PASSED, selects


@dataclass(frozen=True)
class DerivedTask:
    """A task with its status from evidence (or its hand-set one), and the evidence counted."""

    task: Task
    status: Status
    source: str                   # "tests" when derived, "hand" when no evidence covers the task
    passed: int = 0
    failed: int = 0
    absent: tuple[str, ...] = ()  # named tests that selected nothing in the run

    @property
    def disagrees(self) -> bool:
        """Evidence covers the task and the hand-set status is not the derived one."""
        return self.source == "tests" and self.status is not self.task.status


def derive(task: Task, outcomes: Mapping[str, str] | None) -> DerivedTask:
    """``task``'s status from the outcomes of a recorded run ({node id: outcome}); see the module docstring.

    Args:
        task: a validated task.
        outcomes: per-test outcomes of one run of the whole default suite, or None when none is recorded.

    Returns:
        the derived status, or the hand-set one with ``source="hand"`` when no evidence covers the task.
    """
    if outcomes is None or not task.tests or task.status is Status.CANCELLED:
        return DerivedTask(task, task.status, "hand")
    mine = [o for nodeid, o in outcomes.items() if any(selects(p, nodeid) for p in task.tests)]
    absent = tuple(p for p in task.tests if not any(selects(p, n) for n in outcomes))
    passed, failed = sum(o == "passed" for o in mine), sum(o in NOT_PASSED for o in mine)
    if not passed and not failed:
        return DerivedTask(task, task.status, "hand", absent=absent)
    status = Status.IN_PROGRESS if failed or absent else Status.DONE
    return DerivedTask(task, status, "tests", passed, failed, absent)


def derive_all(tasks: Sequence[Task], outcomes: Mapping[str, str] | None) -> list[DerivedTask]:
    """``derive`` for every task, in file order.

    Args:
        tasks: the tasks of ``tasks.toml``.
        outcomes: ``{pytest node id: outcome}`` of one test run; None when there is no run, so every task
            keeps its hand-set status.

    Returns:
        one DerivedTask per task, in the order of ``tasks``.
    """
    return [derive(t, outcomes) for t in tasks]


def with_derived_status(derived: Sequence[DerivedTask]) -> list[Task]:
    """The tasks with their derived status in place of the hand-set one (what the dashboard counts)."""
    return [dataclasses.replace(d.task, status=d.status) for d in derived]


def progress_disagreement(derived: Sequence[DerivedTask]) -> tuple[int, int]:
    """(tasks whose hand-set status disagrees with the evidence, tasks the evidence covers)."""
    covered = [d for d in derived if d.source == "tests"]
    return sum(d.disagrees for d in covered), len(covered)


def evidence_lines(derived: Sequence[DerivedTask], evidence_source: str) -> list[str]:
    """Markdown lines for the progress dashboard: where task statuses come from, and the hand-set ones the
    evidence contradicts.

    Args:
        derived: every task with its derived status.
        evidence_source: where the test outcomes came from, in words (e.g. "test run of 1a2b3c4d started ...").

    Returns:
        the lines, to be joined with newlines: the source, the coverage and disagreement counts, and a table
        of the contradicted tasks when there are any.
    """
    wrong, covered = progress_disagreement(derived)
    lines = [f"Task evidence: {evidence_source}.", "",
             f"- Task statuses from their tests: {covered} of {len(derived)}; the other {len(derived) - covered} "
             "keep their hand-set status (no test of theirs in the recorded run)"]
    if covered:
        lines.append(f"- Hand-set status contradicted by the evidence: {wrong}/{covered} "
                     f"({100 * wrong / covered:.0f}%; QA.progress_accuracy asks for at most 5%)")
    rows = [[f"`{d.task.id}`", d.task.status.value, d.status.value, d.passed, d.failed, ", ".join(d.absent) or "—"]
            for d in derived if d.disagrees]
    if rows:
        lines += ["", "## Hand-set statuses the evidence contradicts", "",
                  tabulate(rows, ["task", "tasks.toml", "from tests", "passed", "failed", "named tests absent"],
                           tablefmt="github")]
    return lines


def outcomes_from_junit(path: str) -> dict[str, str]:
    """{node id: outcome} from pytest's JUnit XML (``pytest --junitxml=PATH``), for a run not recorded per commit.

    pytest writes a test ``tests/qa/test_x.py::test_y[p]`` as classname ``tests.qa.test_x``, name ``test_y[p]``
    (a test in a class: classname ``tests.qa.test_x.TestZ``); a ``failure``, ``error`` or ``skipped`` child
    gives the outcome, none means passed.

    Args:
        path: the JUnit XML file.

    Returns:
        ``{node id: "passed" | "failed" | "error" | "skipped"}``.

    Raises:
        ValueError: the file is not JUnit XML (the message names it).
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ValueError(f"{path} is not a JUnit XML report from pytest --junitxml ({e})") from None
    outcomes = {}
    for case in root.iter("testcase"):
        parts = case.get("classname", "").split(".")
        split = next((i for i in range(len(parts), 0, -1) if parts[i - 1].startswith("test_")), len(parts))
        nodeid = "/".join(parts[:split]) + ".py::" + "::".join([*parts[split:], case.get("name", "")])
        kinds = {child.tag for child in case}
        outcomes[nodeid] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                            else "skipped" if "skipped" in kinds else "passed")
    return outcomes


def recorded_outcomes(commit: str, record_dir: str | os.PathLike | None = None) -> tuple[dict[str, str] | None, str]:
    """The per-test outcomes of the latest recorded run of the whole default suite at ``commit``, and where from.

    The record is ``harness.roadmap.testrun``'s (``.asv/tests/<sha>.json``, written by ``tests/conftest.py``).

    Args:
        commit: the full commit hash.
        record_dir: the record folder; None for ``harness.roadmap.testrun``'s default (``.asv/tests``).

    Returns:
        ``(outcomes, source)``: ``{node id: outcome}`` and a line naming the run; ``(None, reason)`` when there
        is no run, or when this checkout has no test-run record yet.
    """
    try:
        run = testrun.latest_run(commit, record_dir or testrun.RECORD_DIR)
    except testrun.TestRunError as e:
        return None, str(e)
    if run is None:
        return None, f"{testrun.NO_RUN_REASON} ({commit[:8]})"
    return dict(run.outcomes), f"test run of {commit[:8]} started {run.started}"


def progress_disagreement_of(commit: str, tasks: Sequence[Task],
                             record_dir: str | os.PathLike | None = None) -> float | None:
    """QA.progress_accuracy's value at ``commit``: disagreeing / covered tasks, or None when nothing covers a task.

    Args:
        commit: the full commit hash whose recorded test run is the evidence.
        tasks: the tasks of ``tasks.toml``.
        record_dir: the record folder; None for ``harness.roadmap.testrun``'s default.

    Returns:
        the share of covered tasks whose hand-set status the tests contradict, in [0, 1]; None when no task
        has a test in the run.

    Raises:
        LookupError: no recorded test run for ``commit`` (the message says why).
    """
    outcomes, reason = recorded_outcomes(commit, record_dir)
    if outcomes is None:
        raise LookupError(reason)
    wrong, covered = progress_disagreement(derive_all(tasks, outcomes))
    return wrong / covered if covered else None
