"""Verdicts: criteria bindings + parsed asv results -> PASS / FAIL / FAILED-TO-RUN / NOT MEASURED / NOT DELIVERED.

Pure functions over data from ``harness.roadmap.criteria`` and ``harness.roadmap.results``; nothing here runs or reads
anything. A criterion passes only when every gating check has a value and the value meets its threshold.

A check whose benchmark was left out of the evaluated commit's run (``-b REGEX``, or the full tier not
run) takes the most recent value recorded at an earlier commit for the same benchmark version, and says
so (``CheckResult.stale``, ``measured_at``); a value missing everywhere stays NOT MEASURED. Regressions
between commits are decided in ``harness.roadmap.gate``.

How the verdicts count:

* A milestone is **complete** only when every one of its criteria PASSes. When every criterion with a
  value passes but some are NOT MEASURED by design (they need hardware or a process this project
  lacks), its status says "measurable part complete (n not measurable here)"; it is still not complete.
* NOT DELIVERED (the spec asks for it, the project does not build it) counts as not met everywhere:
  it blocks completion and counts against the success rate.
* The **success rate** (QA.milestone_success_rate, ``success_rate``) is a roll-up of the same commit's
  other verdicts: PASS / (PASS + FAIL + FAILED-TO-RUN + NOT DELIVERED). A benchmark that broke
  (FAILED-TO-RUN) is a criterion not met, or breaking a benchmark would raise the rate. NOT MEASURED
  has no value and is left out, as is the roll-up itself.
* ``is_failing`` (the exit code of ``validate``) is about FAIL and FAILED-TO-RUN only. NOT DELIVERED
  does not fail the gate by itself: the summary lists it (the report says what is missing), and it lowers the
  success rate, whose FAIL does fail the gate. So ``validate`` never passes silently over it.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import re
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from harness import roadmap
from harness.roadmap.criteria import BINDINGS, GATE_TWINS, SUCCESS_RATE, Binding, Check
from harness.roadmap.results import AWAITING, BenchmarkInfo, CommitResults, ResultsError, Status, Value, lookup


class Verdict(str, enum.Enum):
    """The outcome of a check or criterion.

    FAILED-TO-RUN (the benchmark raised) is kept apart from FAIL (it ran and missed the threshold),
    NOT MEASURED (no value, by design or because it was skipped) never counts as PASS, and NOT DELIVERED
    (the spec asks for it, the project does not build it) counts as not met.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    FAILED_TO_RUN = "FAILED-TO-RUN"
    NOT_MEASURED = "NOT MEASURED"
    NOT_DELIVERED = "NOT DELIVERED"


# Which verdict a criterion takes when its gating checks disagree: the worst news first.
_PRECEDENCE = (Verdict.FAILED_TO_RUN, Verdict.FAIL, Verdict.NOT_MEASURED, Verdict.PASS)
_BROKEN = (Verdict.FAIL, Verdict.FAILED_TO_RUN)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict at one commit, its value when there is one, and why when there is none.

    ``measured_at`` is the commit whose results hold the value (or the failure); None when no commit
    recorded it. ``stale`` is True when that is an earlier commit than the one evaluated. ``compared``
    is what the regression gate compares: this check's own value, or the calibrated twin named by
    ``harness.roadmap.criteria.GATE_TWINS`` (``compared_name``).
    """

    check: Check
    verdict: Verdict
    value: float | None
    reason: str = ""
    stderr: str = ""
    version: str | None = None
    measured_at: str | None = None
    stale: bool = False
    compared: Value | None = None
    compared_name: str = ""

    @property
    def measured_here(self) -> bool:
        """True when the evaluated commit's own results gave this check a number (not stale, not lost)."""
        return self.value is not None and not self.stale and self.measured_at is not None


@dataclass(frozen=True)
class CriterionResult:
    """One criterion's verdict at one commit: the worst of its gating checks (see ``_PRECEDENCE``).

    ``checks`` holds every check, context ones included (for a roll-up, its one derived check); it is
    empty for a criterion NOT MEASURED by design or NOT DELIVERED, whose ``reason`` then says why.
    """

    criterion_id: str
    commit: str
    verdict: Verdict
    checks: tuple[CheckResult, ...]
    reason: str = ""

    @property
    def not_measured_by_design(self) -> bool:
        """True when the criterion is NOT MEASURED by design (no checks), not for want of a value."""
        return self.verdict is Verdict.NOT_MEASURED and not self.checks

    @property
    def not_delivered(self) -> bool:
        """True when the project does not deliver what the criterion asks (counted as not met)."""
        return self.verdict is Verdict.NOT_DELIVERED


NOT_RUN_REASON = "no result recorded for commit"
_SKIPPED_LINE = re.compile(r"^asv: skipped: (\w+)\((.*)\)\s*$", re.MULTILINE)


def skip_reason(output: str) -> str:
    """The message of the NotImplementedError a benchmark's setup raised, from its captured output.

    asv prints ``asv: skipped: NotImplementedError('...')`` when setup raises it; the harness keeps the
    output beside the results (``harness.roadmap.results``). Returns "" when there is no such line.
    """
    match = _SKIPPED_LINE.search(output or "")
    if match is None:
        return ""
    try:
        message = ast.literal_eval(match.group(2))
    except (ValueError, SyntaxError):
        return match.group(2)
    return str(message)


def evaluate_check(check: Check, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
                   earlier: Sequence[CommitResults] = ()) -> CheckResult:
    """Verdict of one check against one commit's results (``earlier`` commits, oldest first, supply a
    stale value for a benchmark the commit's run left out).

    A lookup problem (unknown benchmark, wrong parameters) becomes NOT MEASURED with the error as the
    reason, rather than an exception, so one bad binding cannot hide every other verdict.

    Args:
        check: the check: benchmark, parameter selection, comparator and threshold.
        commit: the commit's merged results.
        benchmarks: the parsed ``benchmarks.json`` (parameters and current versions).
        earlier: older commits, oldest first, whose values may stand in for a benchmark not run at ``commit``.

    Returns:
        the CheckResult: its verdict, the value (when there is one), the reason and where it was measured.
    """
    sha = commit.commit_hash
    try:
        value = lookup(commit, dict(benchmarks), check.benchmark, dict(check.params), earlier)
    except ResultsError as exc:
        return CheckResult(check, Verdict.NOT_MEASURED, None, str(exc), measured_at=sha)
    where = dict(measured_at=value.measured_at, stale=value.measured_at not in (None, sha), version=value.version)
    stale = f" (stale: measured at {value.measured_at[:8]}, not run at {sha[:8]})" if where["stale"] else ""
    if value.status is Status.FAILED:
        why = value.reason or "the benchmark raised or timed out (asv recorded null)"
        return CheckResult(check, Verdict.FAILED_TO_RUN, None, why + stale, value.stderr, **where)
    if value.status is Status.SKIPPED and skip_reason(value.stderr).startswith(AWAITING) and earlier:
        index = _latest_measured(check, benchmarks, earlier, value.version)
        if index is not None:
            return _stand_in(check, index, commit, benchmarks, earlier, skip_reason(value.stderr))
    if value.status is Status.SKIPPED:
        why = skip_reason(value.stderr) or "the benchmark raised NotImplementedError in setup (asv recorded NaN)"
        return CheckResult(check, Verdict.NOT_MEASURED, None, f"SKIPPED: {why}" + stale, **where)
    if value.status is Status.MISSING:
        if value.measured_at == sha:
            why = (f"the benchmark ran at {sha[:8]} but recorded no value for {check.label} "
                   f"(its parameters changed?)")
        else:
            why = (f"{NOT_RUN_REASON} {sha[:8]} or any earlier commit at the benchmark's current version (not "
                   f"run: filtered by -b, or a full-tier benchmark; run `python -m harness run --full`)")
        return CheckResult(check, Verdict.NOT_MEASURED, None, why, **where)
    assert value.value is not None
    verdict = Verdict.PASS if check.holds(value.value) else Verdict.FAIL
    compared, compared_name = _compared(check, value, commit, benchmarks, earlier)
    return CheckResult(check, verdict, value.value, stale.strip(" ()"), compared=compared,
                       compared_name=compared_name, **where)


def _latest_measured(check: Check, benchmarks: Mapping[str, BenchmarkInfo], earlier: Sequence[CommitResults],
                     version: str | None) -> int | None:
    """Index of the newest of ``earlier`` (oldest first) holding a value of ``check`` at benchmark ``version``."""
    for i in range(len(earlier) - 1, -1, -1):
        try:
            old = lookup(earlier[i], dict(benchmarks), check.benchmark, dict(check.params))
        except ResultsError:
            return None
        if old.status is Status.OK and old.version == version:
            return i
    return None


def _stand_in(check: Check, index: int, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
              earlier: Sequence[CommitResults], why: str) -> CheckResult:
    """``check`` evaluated at ``earlier[index]``, standing in as a stale value for ``commit``, whose benchmark
    was skipped only because an input record of ``commit`` does not exist yet (``AWAITING``): the value is
    not known at ``commit``, not lost there, so it is neither a verdict of ``commit`` nor a regression."""
    res = evaluate_check(check, earlier[index], benchmarks, earlier[:index])
    note = f"stale: measured at {earlier[index].commit_hash[:8]}; at {commit.commit_hash[:8]}: {why}"
    return dataclasses.replace(res, reason=note, stale=True)


def _compared(check: Check, value: Value, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
              earlier: Sequence[CommitResults]) -> tuple[Value | None, str]:
    """What the regression gate compares for ``check``: its own value, or the calibrated twin's value
    from the same run (None when the twin was not recorded with it)."""
    twin = GATE_TWINS.get(check.benchmark)
    if not twin:
        return value, check.benchmark
    try:
        other = lookup(commit, dict(benchmarks), twin, dict(check.params), earlier)
    except ResultsError:
        return None, twin
    same_run = other.status is Status.OK and other.measured_at == value.measured_at
    return (other if same_run else None), twin


def evaluate_criterion(binding: Binding, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
                       earlier: Sequence[CommitResults] = ()) -> CriterionResult:
    """Verdict of one criterion: the worst verdict among its gating checks, PASS when all of them pass.

    The reason joins the reasons of the gating checks that share the deciding verdict.

    Args:
        binding: the criterion's binding to checks (or its NOT MEASURED / NOT DELIVERED reason); a roll-up
            (``derived``) raises ValueError, as only ``evaluate`` has the verdicts it rolls up.
        commit: the commit's merged results.
        benchmarks: the parsed ``benchmarks.json``.
        earlier: older commits, oldest first, that may supply stale values (see ``evaluate_check``).

    Returns:
        the CriterionResult with every check's result, gating and context alike.
    """
    sha = commit.commit_hash
    if binding.not_measured is not None:
        return CriterionResult(binding.criterion_id, sha, Verdict.NOT_MEASURED, (), binding.not_measured.reason)
    if binding.not_delivered is not None:
        return CriterionResult(binding.criterion_id, sha, Verdict.NOT_DELIVERED, (), binding.not_delivered.reason)
    if binding.derived is not None:
        raise ValueError(f"{binding.criterion_id} is a roll-up of other verdicts; evaluate() computes it")
    checks = tuple(evaluate_check(c, commit, benchmarks, earlier) for c in binding.checks)
    gating = [r for r in checks if r.check.gate]
    verdict = next(v for v in _PRECEDENCE if v is Verdict.PASS or any(r.verdict is v for r in gating))
    reasons = "; ".join(f"{r.check.label}: {r.reason}" for r in gating if r.verdict is verdict and r.reason)
    return CriterionResult(binding.criterion_id, sha, verdict, checks, reasons)


# ------------------------------------------------------------------ roll-ups
_COUNTED = (Verdict.PASS, Verdict.FAIL, Verdict.FAILED_TO_RUN, Verdict.NOT_DELIVERED)


@dataclass(frozen=True)
class SuccessRate:
    """Criteria met over criteria that count (see the module docstring); ``rate`` is None when none count."""

    counts: Mapping[Verdict, int]

    @property
    def counted(self) -> int:
        """PASS + FAIL + FAILED-TO-RUN + NOT DELIVERED."""
        return sum(self.counts.get(v, 0) for v in _COUNTED)

    @property
    def rate(self) -> float | None:
        """PASS / counted, or None when nothing counts."""
        return self.counts.get(Verdict.PASS, 0) / self.counted if self.counted else None

    def __str__(self) -> str:
        parts = ", ".join(f"{v.value} {self.counts.get(v, 0)}" for v in _COUNTED)
        return (f"{self.counts.get(Verdict.PASS, 0)} of {self.counted} criteria met ({parts}); "
                f"{self.counts.get(Verdict.NOT_MEASURED, 0)} NOT MEASURED left out")


def success_rate(verdicts: Mapping[str, CriterionResult], exclude: tuple[str, ...] = ()) -> SuccessRate:
    """The share of criteria met, as the seed's "all milestone validation criteria met with > 95% success
    rate" asks (see the module docstring for what counts).

    Args:
        verdicts: one commit's verdicts by criterion id.
        exclude: criterion ids left out (the roll-ups themselves).

    Returns:
        the counts per verdict, with the rate.
    """
    counts = {v: sum(r.verdict is v for cid, r in verdicts.items() if cid not in exclude) for v in Verdict}
    return SuccessRate(counts)


def _derived(binding: Binding, sha: str, others: Mapping[str, CriterionResult],
             bindings: Mapping[str, Binding]) -> CriterionResult:
    check = binding.derived
    assert check is not None and check.benchmark == SUCCESS_RATE, check
    rolled = success_rate(others, exclude=tuple(cid for cid, b in bindings.items() if b.derived is not None))
    if rolled.rate is None:
        res = CheckResult(check, Verdict.NOT_MEASURED, None, "no criterion has a verdict that counts")
    else:
        res = CheckResult(check, Verdict.PASS if check.holds(rolled.rate) else Verdict.FAIL, rolled.rate,
                          str(rolled), version="derived")
    return CriterionResult(binding.criterion_id, sha, res.verdict, (res,), res.reason)


def evaluate(commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
             bindings: Mapping[str, Binding] = BINDINGS,
             earlier: Sequence[CommitResults] = ()) -> dict[str, CriterionResult]:
    """Every criterion of the roadmap, in roadmap order, for one commit (``earlier``: see evaluate_check);
    roll-ups after the rest.

    Args:
        commit: the commit's merged results.
        benchmarks: the parsed ``benchmarks.json``.
        bindings: ``{criterion id: Binding}`` covering every roadmap criterion (default: the project's).
        earlier: older commits, oldest first, that may supply stale values.

    Returns:
        ``{criterion id: CriterionResult}`` in roadmap order, roll-ups included.
    """
    order = list(roadmap.all_criteria())
    out = {cid: evaluate_criterion(bindings[cid], commit, benchmarks, earlier) for cid in order
           if bindings[cid].derived is None}
    done = dict(out)
    for cid in order:
        if bindings[cid].derived is not None:
            out[cid] = _derived(bindings[cid], commit.commit_hash, done, bindings)
    return {cid: out[cid] for cid in order}


def evaluate_history(commits: Sequence[CommitResults], benchmarks: Mapping[str, BenchmarkInfo],
                     bindings: Mapping[str, Binding] = BINDINGS) -> list[dict[str, CriterionResult]]:
    """``evaluate`` for each commit, oldest first; each commit's earlier ones supply its stale values.

    Args:
        commits: every recorded commit's results, oldest first (as ``load_machine`` returns them).
        benchmarks: the parsed ``benchmarks.json``.
        bindings: ``{criterion id: Binding}`` covering every roadmap criterion.

    Returns:
        one ``evaluate`` dict per commit, in the order of ``commits``.
    """
    return [evaluate(c, benchmarks, bindings, commits[:i]) for i, c in enumerate(commits)]


def measured_here(verdicts: Mapping[str, CriterionResult]) -> int:
    """How many checks got a number from the evaluated commit's own results (stale values do not count).

    Zero means the commit measured nothing at all (every value NaN, null, unknown or absent), which
    ``validate`` refuses; ``harness.roadmap.gate`` uses the same ``CheckResult.measured_here`` to tell a check
    that ran and lost its value from one left out of a partial run.
    """
    return sum(chk.measured_here for res in verdicts.values() for chk in res.checks)


# ------------------------------------------------------------------ progress
def completion_status(passed: int, total: int, measurable: int, by_design: int) -> str:
    """A milestone's (or phase's) completion in words (see the module docstring).

    Args:
        passed: criteria that PASS.
        total: all its criteria.
        measurable: criteria that can have a value here (not NOT MEASURED by design, not NOT DELIVERED).
        by_design: criteria NOT MEASURED by design.

    Returns:
        "complete", "measurable part complete (n not measurable here)", or "no".
    """
    if total and passed == total:
        return "complete"
    if measurable and passed == measurable and passed + by_design == total:
        return f"measurable part complete ({by_design} not measurable here)"
    return "no"


@dataclass(frozen=True)
class MilestoneProgress:
    """A milestone is complete only when every one of its criteria PASSes.

    ``not_measured_by_design`` counts criteria bound to NotMeasured and ``not_delivered`` those bound to
    NotDelivered; neither ever counts as passed.
    """

    milestone_id: str
    name: str
    phase_id: str | None
    passed: int
    failed: int
    failed_to_run: int
    unmeasured: int              # measurable, but no value this commit (skipped, missing)
    not_measured_by_design: int
    not_delivered: int = 0

    @property
    def measurable(self) -> int:
        """Criteria that could have a value here: every one except those NOT MEASURED by design or NOT DELIVERED."""
        return self.passed + self.failed + self.failed_to_run + self.unmeasured

    @property
    def total(self) -> int:
        """Every criterion of the milestone."""
        return self.measurable + self.not_measured_by_design + self.not_delivered

    @property
    def complete(self) -> bool:
        """True when the milestone has criteria and every one of them passes."""
        return self.total > 0 and self.passed == self.total

    @property
    def status(self) -> str:
        """``completion_status``: complete, measurable part complete (n not measurable here), or no."""
        return completion_status(self.passed, self.total, self.measurable, self.not_measured_by_design)


def tally(milestone: roadmap.Milestone, verdicts: Mapping[str, Verdict],
          by_design: Collection[str] = ()) -> MilestoneProgress:
    """The verdict counts of ``milestone``'s criteria: the one rule behind "complete" (``MilestoneProgress``),
    shared by the reports and the progress tracker.

    Args:
        milestone: a roadmap milestone.
        verdicts: {criterion_id: verdict}; a criterion absent from it counts as NOT MEASURED (no value).
        by_design: ids of criteria NOT MEASURED by design (no benchmark can measure them here).

    Returns:
        the counts per verdict, criteria NOT MEASURED by design counted apart.
    """
    mine = [verdicts.get(c.id, Verdict.NOT_MEASURED) for c in milestone.criteria if c.id not in by_design]

    def count(verdict: Verdict) -> int:
        return sum(v is verdict for v in mine)

    return MilestoneProgress(
        milestone.id, milestone.name, milestone.phase_id,
        passed=count(Verdict.PASS), failed=count(Verdict.FAIL), failed_to_run=count(Verdict.FAILED_TO_RUN),
        unmeasured=count(Verdict.NOT_MEASURED), not_measured_by_design=len(milestone.criteria) - len(mine),
        not_delivered=count(Verdict.NOT_DELIVERED),
    )


def milestone_progress(verdicts: Mapping[str, CriterionResult],
                       milestones: Sequence[roadmap.Milestone] = roadmap.MILESTONES) -> list[MilestoneProgress]:
    """Verdict counts per milestone, in roadmap order.

    Args:
        verdicts: one commit's ``{criterion id: CriterionResult}``.
        milestones: the milestones to tally (default: the whole roadmap).

    Returns:
        one MilestoneProgress per milestone, in the order given.
    """
    by_design = {cid for cid, r in verdicts.items() if r.not_measured_by_design}
    plain = {cid: r.verdict for cid, r in verdicts.items()}
    return [tally(m, plain, by_design) for m in milestones]


@dataclass(frozen=True)
class PhaseProgress:
    """Progress of one phase (or the cross-phase row), summed over its milestones."""

    phase_id: str
    name: str
    milestones: tuple[MilestoneProgress, ...]

    @property
    def passed(self) -> int:
        """Criteria passed, over all the phase's milestones."""
        return sum(m.passed for m in self.milestones)

    @property
    def measurable(self) -> int:
        """Measurable criteria, over all the phase's milestones."""
        return sum(m.measurable for m in self.milestones)

    @property
    def not_measured_by_design(self) -> int:
        """Criteria NOT MEASURED by design, over all the phase's milestones."""
        return sum(m.not_measured_by_design for m in self.milestones)

    @property
    def not_delivered(self) -> int:
        """Criteria NOT DELIVERED, over all the phase's milestones."""
        return sum(m.not_delivered for m in self.milestones)

    @property
    def complete(self) -> bool:
        """True when the phase has milestones and every one of them is complete."""
        return bool(self.milestones) and all(m.complete for m in self.milestones)

    @property
    def status(self) -> str:
        """``completion_status`` over all the phase's criteria."""
        return completion_status(self.passed, sum(m.total for m in self.milestones), self.measurable,
                                 self.not_measured_by_design)


def phase_progress(verdicts: Mapping[str, CriterionResult]) -> list[PhaseProgress]:
    """Phases 0-6 plus one cross-phase row (QA and project milestones)."""
    by_phase: dict[str | None, list[MilestoneProgress]] = {}
    for mp in milestone_progress(verdicts):
        by_phase.setdefault(mp.phase_id, []).append(mp)
    rows = [PhaseProgress(p.id, p.name, tuple(by_phase.get(p.id, ()))) for p in roadmap.PHASES]
    rows.append(PhaseProgress(roadmap.CROSS_PHASE, "Cross-phase QA and project criteria",
                              tuple(by_phase.get(None, ()))))
    return rows


def is_failing(verdicts: Mapping[str, CriterionResult]) -> bool:
    """True when any criterion is FAIL or FAILED-TO-RUN; NOT MEASURED or NOT DELIVERED alone does not fail a
    run (NOT DELIVERED lowers the success-rate roll-up, whose FAIL does)."""
    return any(r.verdict in _BROKEN for r in verdicts.values())
