"""The regression gate: what got worse between a baseline commit and a later one, decided from the spread
of repeated measurements the way ``asv compare`` decides it, so that host noise does not cry wolf.

Two kinds of regression, both between the verdicts of two commits (``harness.roadmap.validate``):

* **Verdict.** A criterion that PASSed at the baseline and has any other verdict at the later commit
  (FAIL, FAILED-TO-RUN, NOT MEASURED, or a verdict added later), when the later commit's own run caused
  it: a check that ran and lost its value (asv recorded null or NaN, a parameter is missing, the benchmark
  is gone) counts; a check left out of a partial run (``-b REGEX``, the full tier not run), whose value
  is stale or absent, does not.
  A verdict that flipped while every value deciding it moved within asv's rule below (sampled values
  not significantly worse, or worse by less than the factor; a once-per-process timing within its
  declared range) is **borderline**: a value sitting at its threshold, on the other side this time for
  no reason the statistics can see. It is still listed, with the FAIL it gives, but marked
  (``Regression.borderline``, printed ``BORDERLINE``) and does not fail the run. A value without spread
  (deterministic) that crosses its threshold is never borderline: every change of it comes from the code.
* **Value.** A gating check measured at the later commit whose compared value (its own, or the
  calibrated twin of ``GATE_TWINS``) is worse than the baseline's, same benchmark version
  only, by asv compare's rule: worse by more than ``FACTOR`` (asv's default ``--factor`` 1.1) *and*
  statistically different by ``asv._stats.is_different`` (a Mann-Whitney U test at p < 0.002 on the
  recorded samples when there are enough of them, otherwise non-overlapping 99% confidence intervals of
  the median). A value recorded without spread is compared by the factor alone, as asv compare does:
  in this suite those are deterministic numbers (cache shapes, docstring scores, seeded training runs
  that give bit-identical results run to run), whose every change comes from the code. A timing that can
  be taken only once per process (a compile) declares its recorded run-to-run range on its check
  (``Check.run_to_run``); the factor for it is the larger of the two.

"Worse" follows the check's comparator: lower for ``<``/``<=``, higher for ``>``/``>=``, further from
the threshold for ``==``/``within``.

**Host shifts.** Timings are taken as ratios within one process (TF over Flax, a step over a peak timed
beside it), so that the host's load cancels. That fails when the host itself changes under a run: on
the shared 2-core host a whole process once saw its copy bandwidth at 82 GB/s (44 GB/s in the run before)
while its decode steps got slower, and the decode-over-floor ratio went from 2.7 to 7.5 with no code
change. A regression whose criterion carries ``calibration`` checks (the host peaks measured in the same
process) that moved by more than the factor, either way, still counts, but says so (``host_shift``),
so whoever reads it reruns before blaming the commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from asv import _stats  # asv compare's own significance test (asv is pinned to 0.6.x in pyproject.toml)

from harness.roadmap.criteria import Check, Comparator
from harness.roadmap.results import Value
from harness.roadmap.validate import CheckResult, CriterionResult, Verdict

FACTOR = 1.1          # asv compare's default --factor: a smaller move is never a regression
P_THRESHOLD = 0.002   # asv._stats.is_different's default significance level for the Mann-Whitney U test


@dataclass(frozen=True)
class Regression:
    """Something that got worse between two commits: a verdict (``what="verdict"``) or a check's value.

    ``detail`` says why the gate calls it a regression (how much worse, and on what statistics).
    """

    criterion_id: str
    what: str
    before: str
    after: str
    commit_before: str
    commit_after: str
    detail: str = ""
    host_shift: bool = False  # the criterion's host peaks moved beyond the factor in the same run (module doc)
    borderline: bool = False  # a verdict flipped by values that moved within asv's rule (module doc)

    @property
    def label(self) -> str:
        """``REGRESSION``, or ``BORDERLINE`` for a flip within the noise (which does not fail a run)."""
        return "BORDERLINE" if self.borderline else "REGRESSION"

    def __str__(self) -> str:
        text = (f"{self.criterion_id} {self.what}: {self.before} @ {self.commit_before[:8]} -> "
                f"{self.after} @ {self.commit_after[:8]}")
        return f"{text} ({self.detail})" if self.detail else text


# ------------------------------------------------------------------ the asv compare rule
def worse_by_factor(check: Check, before: float, after: float, factor: float = FACTOR) -> bool:
    """True when ``after`` is worse than ``before`` by more than ``factor``, in the check's direction.

    This is asv compare's ``a < b / factor`` with "better" read from the comparator.

    Args:
        check: the check whose comparator says which direction is better (for WITHIN: closer to the threshold).
        before: the baseline value.
        after: the new value.
        factor: how much worse counts, as a ratio (asv compare's default, ``FACTOR``).

    Returns:
        True for a regression beyond ``factor``; False when either value is not finite.
    """
    if not (math.isfinite(before) and math.isfinite(after)):
        return False
    if check.comparator in (Comparator.GT, Comparator.GE):
        return after * factor < before
    if check.comparator in (Comparator.LT, Comparator.LE):
        return after > before * factor
    off_before, off_after = abs(before - check.threshold), abs(after - check.threshold)
    return off_after > off_before * factor and off_after > off_before


def significance(before: Value, after: Value) -> tuple[bool, str] | None:
    """asv compare's statistical test of two sampled values: (different?, which rule decided).

    Args:
        before: the baseline's looked-up value, with asv's spread and samples.
        after: the new value, likewise.

    Returns:
        ``(different, rule)``: whether the two differ significantly, and the rule that decided in words;
        None when either value has no spread (or a single sample): asv compare then uses the factor alone.
    """
    a, b = before.spread, after.spread
    if a is None or b is None or a.repeat == 1 or b.repeat == 1:
        return None
    different = _stats.is_different(a.samples, b.samples, a.asv_stats(), b.asv_stats(), P_THRESHOLD)
    if a.samples and b.samples and 1 / math.comb(len(a.samples) + len(b.samples),
                                                 min(len(a.samples), len(b.samples))) < P_THRESHOLD:
        rule = f"Mann-Whitney U on {len(a.samples)} vs {len(b.samples)} samples, p {'<' if different else '>='} " \
               f"{P_THRESHOLD}"
    else:
        rule = (f"99% CIs of the median [{a.ci_99[0]:.4g}, {a.ci_99[1]:.4g}] and [{b.ci_99[0]:.4g}, "
                f"{b.ci_99[1]:.4g}] {'do not overlap' if different else 'overlap'}")
    return different, rule


def value_regressed(check: Check, before: Value, after: Value, factor: float = FACTOR) -> str | None:
    """Why ``after`` is a regression from ``before`` for ``check`` (asv compare's rule), or None if it is not.

    Args:
        check: the check compared (its comparator gives the better direction).
        before: the baseline's looked-up value.
        after: the new value.
        factor: how much worse counts, as a ratio.

    Returns:
        a one-line reason (how much worse, and the statistical test or its absence); None when the change is
        within ``factor``, not significant, or a value is missing.
    """
    if before.value is None or after.value is None or not worse_by_factor(check, before.value, after.value, factor):
        return None
    change = f"{abs(after.value / before.value - 1):.0%} worse" if before.value else "worse"
    test = significance(before, after)
    if test is None and check.run_to_run > factor:
        # A single timing per process: asv's factor is inside its own run-to-run range, so it must
        # also leave that range to count.
        if not worse_by_factor(check, before.value, after.value, check.run_to_run):
            return None
        return (f"{change}, beyond its recorded run-to-run range x{check.run_to_run:g} (one sample per run, "
                f"so the range decides)")
    if test is None:
        return f"{change}, beyond asv's factor {factor}; no spread recorded, so the factor alone decides"
    different, rule = test
    return f"{change}, beyond asv's factor {factor}; significant: {rule}" if different else None


# ------------------------------------------------------------------ regressions between two commits
def caused_here(result: CriterionResult) -> bool:
    """True when ``result``'s verdict comes from its own commit's run, not from a check left out of it.

    A criterion without checks (NOT MEASURED by design, a roll-up) is decided at its commit. Otherwise
    some gating check sharing the verdict must have been recorded at that commit: a value, a null, a
    NaN, a missing parameter, or a benchmark that no longer exists. A stale value, or none at all
    because the benchmark did not run, does not count.
    """
    if not result.checks:
        return True
    return any(_recorded_here(c) for c in result.checks if c.check.gate and c.verdict is result.verdict)


def _recorded_here(check: CheckResult) -> bool:
    return check.measured_at is not None and not check.stale


def regressions(before: Mapping[str, CriterionResult], after: Mapping[str, CriterionResult],
                factor: float = FACTOR) -> list[Regression]:
    """What got worse from ``before`` (the baseline) to ``after``: see the module docstring.

    Values are compared only when the compared benchmark's asv ``version`` is the same at both commits:
    a new version measures something else (asv starts a new series too), so only a verdict that broke
    counts then.

    Args:
        before: the baseline commit's verdicts.
        after: the new commit's verdicts.
        factor: how much worse a value must get to count, as a ratio.

    Returns:
        one Regression per broken verdict and per gating (or calibrated-twin) value that got significantly
        worse, in the order of ``after``.
    """
    out: list[Regression] = []
    for cid, new in after.items():
        old = before.get(cid)
        if old is None:
            continue
        shift = host_shift(old, new, factor)
        if old.verdict is Verdict.PASS and new.verdict is not Verdict.PASS and caused_here(new):
            noise = within_the_noise(old, new, factor)
            why = _why_verdict(new) if noise is None else f"{_why_verdict(new)}; borderline: {noise}"
            out.append(Regression(cid, "verdict", old.verdict.value, new.verdict.value, old.commit, new.commit,
                                  _with(why, shift), host_shift=shift is not None, borderline=noise is not None))
        old_checks = {r.check: r for r in old.checks}
        for res in new.checks:
            prev = old_checks.get(res.check)
            # Gating values, and any value with a calibrated twin (GATE_TWINS): the twin tracks this code's own
            # speed against the host, so it is gated even where the check is context (P4's one-host checkpoint).
            calibrated = res.compared_name != res.check.benchmark
            if not ((res.check.gate or calibrated) and res.measured_here and prev is not None):
                continue
            a, b = prev.compared, res.compared
            if a is None or b is None or a.version != b.version or a.measured_at == b.measured_at:
                continue
            why = value_regressed(res.check, a, b, factor)
            if why is None:
                continue
            what = res.check.label
            if calibrated:
                what += f" (gate: {res.compared_name.rsplit('.', 1)[-1]} {_fmt(a.value)} -> {_fmt(b.value)})"
            # The commits the two values were measured at: after a partial run the baseline's value can
            # be a stale one from an earlier commit, and the line must name that commit, not the baseline.
            out.append(Regression(cid, what, _fmt(prev.value), _fmt(res.value), a.measured_at or old.commit,
                                  b.measured_at or new.commit, _with(why, shift), host_shift=shift is not None))
    return out


def within_the_noise(before: CriterionResult, after: CriterionResult, factor: float = FACTOR) -> str | None:
    """Why ``after``'s FAIL is a borderline flip from ``before``'s PASS, or None when it is a regression.

    Borderline when every gating check that FAILs was measured at both commits (its own value, same
    benchmark version), has a spread to judge by (recorded samples, or a declared ``run_to_run``), and
    did not get worse by asv compare's rule (``value_regressed``): the value sits at its threshold and
    the run-to-run noise carried it across. A verdict lost to a missing value, a check without spread,
    or a value that moved significantly is not borderline.

    Returns:
        one line naming each deciding value's move and why it is within the noise; None otherwise.
    """
    if after.verdict is not Verdict.FAIL:
        return None
    old_checks = {r.check: r for r in before.checks}
    deciding = [c for c in after.checks if c.check.gate and c.verdict is Verdict.FAIL]
    moves = []
    for res in deciding:
        prev = old_checks.get(res.check)
        if prev is None or not res.measured_here or res.compared_name != res.check.benchmark:
            return None
        a, b = prev.compared, res.compared
        if a is None or b is None or a.value is None or b.value is None or a.version != b.version:
            return None
        test = significance(a, b)
        if (test is None and res.check.run_to_run <= factor) or value_regressed(res.check, a, b, factor):
            return None
        change = abs(b.value / a.value - 1) if a.value else math.inf
        if test is None:
            how = f"within its run-to-run range x{res.check.run_to_run:g}"
        elif not worse_by_factor(res.check, a.value, b.value, factor):
            how = f"within asv's factor {factor}"
        else:
            how = f"not significant: {test[1]}"
        moves.append(f"{res.check.label} {_fmt(a.value)} -> {_fmt(b.value)}, {change:.1%} worse, {how}")
    if not moves:
        return None
    return ("; ".join(moves) + ". The value sits at its threshold; the FAIL stands, but it is not counted "
            "against this commit")


def counted(found: list[Regression]) -> list[Regression]:
    """The regressions of ``found`` that fail ``run`` and ``validate``: all but the borderline flips."""
    return [r for r in found if not r.borderline]


def _with(detail: str, shift: str | None) -> str:
    return detail if shift is None else f"{detail}; {shift}" if detail else shift


def host_shift(before: CriterionResult, after: CriterionResult, factor: float = FACTOR) -> str | None:
    """How the host's own peaks moved between two runs of a criterion, when any moved beyond ``factor``.

    Reads the criterion's ``calibration`` checks (peaks measured in the same process as its values) that
    were measured at both commits, at the later one in this run, with the same benchmark version.

    Args:
        before: the baseline's verdict of the criterion.
        after: the later commit's verdict of the same criterion.
        factor: how far a peak must move, either way, as a ratio.

    Returns:
        a one-line account of the peaks that moved (``None`` when none did, or none was measured at both).
    """
    old_checks = {r.check: r for r in before.checks}
    moved = []
    for res in after.checks:
        prev = old_checks.get(res.check)
        if not res.check.calibration or prev is None or not res.measured_here or prev.version != res.version:
            continue                                    # a new version measures something else: not comparable
        a, b = prev.value, res.value
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
            continue
        if max(a, b) / min(a, b) > factor:
            moved.append(f"{res.check.label} {_fmt(a)} -> {_fmt(b)} {res.check.unit} ({b / a - 1:+.0%})")
    if not moved:
        return None
    return ("the host changed under the run: " + ", ".join(moved) + ", measured beside these values in the same "
            "process; rerun before blaming the commit")


def _why_verdict(result: CriterionResult) -> str:
    """The gating checks that gave ``result`` its verdict: value against threshold, or the reason."""
    deciding = [c for c in result.checks if c.check.gate and c.verdict is result.verdict]
    parts = [f"{c.check.label}: {_fmt(c.value)} vs {c.check.threshold_text}" if c.value is not None
             else f"{c.check.label}: {c.reason}" for c in deciding]
    return "; ".join(parts) or result.reason


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
