"""Verdicts: criteria bindings + parsed asv results -> PASS / FAIL / FAILED-TO-RUN / NOT MEASURED.

Pure functions over data from ``harness.criteria`` and ``harness.results``; nothing here runs or reads
anything. A criterion passes only when every gating check has a value and the value meets its threshold.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness import roadmap
from harness.criteria import BINDINGS, Binding, Check
from harness.results import BenchmarkInfo, CommitResults, ResultsError, Status, lookup


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


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict at one commit, its value when there is one, and why when there is none."""

    check: Check
    verdict: Verdict
    value: float | None
    reason: str = ""
    stderr: str = ""
    version: str | None = None


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


def evaluate_check(check: Check, commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo]) -> CheckResult:
    """Verdict of one check against one commit's results.

    A lookup problem (unknown benchmark, wrong parameters) becomes NOT MEASURED with the error as the
    reason, rather than an exception, so one bad binding cannot hide every other verdict.
    """
    try:
        value = lookup(commit, dict(benchmarks), check.benchmark, dict(check.params))
    except ResultsError as exc:
        return CheckResult(check, Verdict.NOT_MEASURED, None, str(exc))
    if value.status is Status.FAILED:
        return CheckResult(check, Verdict.FAILED_TO_RUN, None,
                           "the benchmark raised or timed out (asv recorded null)", value.stderr)
    if value.status is Status.SKIPPED:
        return CheckResult(check, Verdict.NOT_MEASURED, None,
                           "SKIPPED: the benchmark raised NotImplementedError in setup (asv recorded NaN)")
    if value.status is Status.MISSING:
        return CheckResult(check, Verdict.NOT_MEASURED, None,
                           f"no result recorded for commit {commit.commit_hash[:8]} (not run, e.g. filtered by -b)")
    assert value.value is not None
    verdict = Verdict.PASS if check.holds(value.value) else Verdict.FAIL
    return CheckResult(check, verdict, value.value, version=value.version)


def evaluate_criterion(binding: Binding, commit: CommitResults,
                       benchmarks: Mapping[str, BenchmarkInfo]) -> CriterionResult:
    """Verdict of one criterion: the worst verdict among its gating checks, PASS when all of them pass.

    The reason joins the reasons of the gating checks that share the deciding verdict.
    """
    sha = commit.commit_hash
    if binding.not_measured is not None:
        return CriterionResult(binding.criterion_id, sha, Verdict.NOT_MEASURED, (), binding.not_measured.reason)
    checks = tuple(evaluate_check(c, commit, benchmarks) for c in binding.checks)
    gating = [r for r in checks if r.check.gate]
    verdict = next(v for v in _PRECEDENCE if v is Verdict.PASS or any(r.verdict is v for r in gating))
    reasons = "; ".join(f"{r.check.label}: {r.reason}" for r in gating if r.verdict is verdict and r.reason)
    return CriterionResult(binding.criterion_id, sha, verdict, checks, reasons)


def evaluate(commit: CommitResults, benchmarks: Mapping[str, BenchmarkInfo],
             bindings: Mapping[str, Binding] = BINDINGS) -> dict[str, CriterionResult]:
    """Every criterion of the roadmap, in roadmap order, for one commit."""
    return {cid: evaluate_criterion(bindings[cid], commit, benchmarks) for cid in roadmap.all_criteria()}


def evaluate_history(commits: Sequence[CommitResults], benchmarks: Mapping[str, BenchmarkInfo],
                     bindings: Mapping[str, Binding] = BINDINGS) -> list[dict[str, CriterionResult]]:
    """``evaluate`` for each commit, in the order given (oldest first for ``regressions`` to make sense)."""
    return [evaluate(c, benchmarks, bindings) for c in commits]


# ------------------------------------------------------------------ regressions
@dataclass(frozen=True)
class Regression:
    """Something that got worse between two commits: a verdict (``what="verdict"``) or a check's value."""

    criterion_id: str
    what: str
    before: str
    after: str
    commit_before: str
    commit_after: str

    def __str__(self) -> str:
        return (f"{self.criterion_id} {self.what}: {self.before} @ {self.commit_before[:8]} -> "
                f"{self.after} @ {self.commit_after[:8]}")


_BROKEN = (Verdict.FAIL, Verdict.FAILED_TO_RUN)


def regressions(before: Mapping[str, CriterionResult], after: Mapping[str, CriterionResult]) -> list[Regression]:
    """What got worse from ``before`` to ``after``: a PASS that became FAIL or FAILED-TO-RUN, or a gating
    check's value that moved the wrong way by more than its ``regress_tol``.

    Values are compared only when the benchmark's asv ``version`` is the same at both commits: a new
    version means the benchmark now measures something else (asv starts a new series too), so only a
    verdict that broke counts then.
    """
    out: list[Regression] = []
    for cid, new in after.items():
        old = before.get(cid)
        if old is None:
            continue
        if old.verdict is Verdict.PASS and new.verdict in _BROKEN:
            out.append(Regression(cid, "verdict", old.verdict.value, new.verdict.value, old.commit, new.commit))
        old_checks = {r.check: r for r in old.checks}
        for res in new.checks:
            prev = old_checks.get(res.check)
            if (res.check.gate and prev is not None and prev.value is not None and res.value is not None
                    and prev.version == res.version and res.check.regressed(prev.value, res.value)):
                out.append(Regression(cid, res.check.label, f"{prev.value:.4g}", f"{res.value:.4g}",
                                      old.commit, new.commit))
    return out


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
