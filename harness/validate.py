"""Verdicts: criteria bindings + parsed asv results -> PASS / FAIL / FAILED-TO-RUN / NOT MEASURED.

Pure functions over data from ``harness.criteria`` and ``harness.results``; nothing here runs or reads
anything. A criterion passes only when every gating check has a value and the value meets its threshold.

A check whose benchmark was left out of the evaluated commit's run (``-b REGEX``, or the full tier not
run) takes the most recent value recorded at an earlier commit for the same benchmark version, and says
so (``CheckResult.stale``, ``measured_at``); a value missing everywhere stays NOT MEASURED. Regressions
between commits are decided in ``harness.gate``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness import roadmap
from harness.criteria import BENCHMARKS, BINDINGS, Binding, Check
from harness.results import BenchmarkInfo, CommitResults, ResultsError, Status, Value, lookup


class Verdict(str, enum.Enum):
    """The outcome of a check or criterion.

    FAILED-TO-RUN (the benchmark raised) is kept apart from FAIL (it ran and missed the threshold), and
    NOT MEASURED (no value, by design or because it was skipped) never counts as PASS.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    FAILED_TO_RUN = "FAILED-TO-RUN"
    NOT_MEASURED = "NOT MEASURED"


# Which verdict a criterion takes when its gating checks disagree: the worst news first.
_PRECEDENCE = (Verdict.FAILED_TO_RUN, Verdict.FAIL, Verdict.NOT_MEASURED, Verdict.PASS)
_BROKEN = (Verdict.FAIL, Verdict.FAILED_TO_RUN)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict at one commit, its value when there is one, and why when there is none.

    ``measured_at`` is the commit whose results hold the value (or the failure); None when no commit
    recorded it. ``stale`` is True when that is an earlier commit than the one evaluated. ``compared``
    is what the regression gate compares: this check's own value, or the calibrated twin named by
    ``BenchmarkSpec.gate_on`` (``compared_name``).
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

    ``checks`` holds every check, context ones included; it is empty for a criterion that is NOT
    MEASURED by design, whose ``reason`` then says why.
    """

    criterion_id: str
    commit: str
    verdict: Verdict
    checks: tuple[CheckResult, ...]
    reason: str = ""

    @property
    def not_measured_by_design(self) -> bool:
        """True when the criterion is NOT MEASURED by design (no checks), not for want of a value."""
        return not self.checks


def evaluate_check(check: Check, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
                   earlier: Sequence[CommitResults] = ()) -> CheckResult:
    """Verdict of one check against one commit's results (``earlier`` commits, oldest first, supply a
    stale value for a benchmark the commit's run left out).

    A lookup problem (unknown benchmark, wrong parameters) becomes NOT MEASURED with the error as the
    reason, rather than an exception, so one bad binding cannot hide every other verdict.
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
    if value.status is Status.SKIPPED:
        return CheckResult(check, Verdict.NOT_MEASURED, None,
                           "SKIPPED: the benchmark raised NotImplementedError in setup (asv recorded NaN)" + stale,
                           **where)
    if value.status is Status.MISSING:
        if value.measured_at == sha:
            why = (f"the benchmark ran at {sha[:8]} but recorded no value for {check.label} "
                   f"(its parameters changed?)")
        else:
            why = (f"no result recorded for commit {sha[:8]} or any earlier commit at the benchmark's current "
                   f"version (not run: filtered by -b, or a full-tier benchmark; run `python -m harness run --full`)")
        return CheckResult(check, Verdict.NOT_MEASURED, None, why, **where)
    assert value.value is not None
    verdict = Verdict.PASS if check.holds(value.value) else Verdict.FAIL
    compared, compared_name = _compared(check, value, commit, benchmarks, earlier)
    return CheckResult(check, verdict, value.value, stale.strip(" ()"), compared=compared,
                       compared_name=compared_name, **where)


def _compared(check: Check, value: Value, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
              earlier: Sequence[CommitResults]) -> tuple[Value | None, str]:
    """What the regression gate compares for ``check``: its own value, or the calibrated twin's value
    from the same run (None when the twin was not recorded with it)."""
    spec = BENCHMARKS.get(check.benchmark)
    twin = spec.gate_on if spec is not None else None
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
    """
    sha = commit.commit_hash
    if binding.not_measured is not None:
        return CriterionResult(binding.criterion_id, sha, Verdict.NOT_MEASURED, (), binding.not_measured.reason)
    checks = tuple(evaluate_check(c, commit, benchmarks, earlier) for c in binding.checks)
    gating = [r for r in checks if r.check.gate]
    verdict = next(v for v in _PRECEDENCE if v is Verdict.PASS or any(r.verdict is v for r in gating))
    reasons = "; ".join(f"{r.check.label}: {r.reason}" for r in gating if r.verdict is verdict and r.reason)
    return CriterionResult(binding.criterion_id, sha, verdict, checks, reasons)


def evaluate(commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
             bindings: Mapping[str, Binding] = BINDINGS,
             earlier: Sequence[CommitResults] = ()) -> dict[str, CriterionResult]:
    """Every criterion of the roadmap, in roadmap order, for one commit (``earlier``: see evaluate_check)."""
    return {cid: evaluate_criterion(bindings[cid], commit, benchmarks, earlier) for cid in roadmap.all_criteria()}


def evaluate_history(commits: Sequence[CommitResults], benchmarks: Mapping[str, BenchmarkInfo],
                     bindings: Mapping[str, Binding] = BINDINGS) -> list[dict[str, CriterionResult]]:
    """``evaluate`` for each commit, oldest first; each commit's earlier ones supply its stale values."""
    return [evaluate(c, benchmarks, bindings, commits[:i]) for i, c in enumerate(commits)]


def measured_here(verdicts: Mapping[str, CriterionResult]) -> int:
    """How many checks got a number from the evaluated commit's own results (stale values do not count).

    Zero means the commit measured nothing at all (every value NaN, null, unknown or absent), which
    ``validate`` refuses; ``harness.gate`` uses the same ``CheckResult.measured_here`` to tell a check
    that ran and lost its value from one left out of a partial run.
    """
    return sum(chk.measured_here for res in verdicts.values() for chk in res.checks)


# ------------------------------------------------------------------ progress
@dataclass(frozen=True)
class MilestoneProgress:
    """A milestone is complete only when it has measurable criteria and all of them PASS.

    ``not_measured_by_design`` counts criteria bound to NotMeasured; they never count as passed.
    """

    milestone_id: str
    name: str
    phase_id: str | None
    passed: int
    failed: int
    failed_to_run: int
    unmeasured: int              # measurable, but no value this commit (skipped, missing)
    not_measured_by_design: int

    @property
    def measurable(self) -> int:
        """Criteria that could have a value: every one except those NOT MEASURED by design."""
        return self.passed + self.failed + self.failed_to_run + self.unmeasured

    @property
    def complete(self) -> bool:
        """True when there is at least one measurable criterion and every measurable one passes."""
        return self.measurable > 0 and self.passed == self.measurable


def _tally(milestone: roadmap.Milestone, verdicts: Mapping[str, CriterionResult]) -> MilestoneProgress:
    results = [verdicts[c.id] for c in milestone.criteria]

    def count(verdict: Verdict) -> int:
        return sum(r.verdict is verdict and not r.not_measured_by_design for r in results)

    return MilestoneProgress(
        milestone.id, milestone.name, milestone.phase_id,
        passed=count(Verdict.PASS), failed=count(Verdict.FAIL), failed_to_run=count(Verdict.FAILED_TO_RUN),
        unmeasured=count(Verdict.NOT_MEASURED),
        not_measured_by_design=sum(r.not_measured_by_design for r in results),
    )


def milestone_progress(verdicts: Mapping[str, CriterionResult],
                       milestones: Sequence[roadmap.Milestone] = roadmap.MILESTONES) -> list[MilestoneProgress]:
    """Verdict counts per milestone, in roadmap order."""
    return [_tally(m, verdicts) for m in milestones]


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
    def complete(self) -> bool:
        """True when every milestone of the phase is complete."""
        return all(m.complete for m in self.milestones)


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
    """True when any criterion is FAIL or FAILED-TO-RUN; NOT MEASURED alone does not fail a run."""
    return any(r.verdict in _BROKEN for r in verdicts.values())
