"""What a binding is made of: a ``Check`` (a benchmark's value against a threshold), ``NotMeasured`` and
``NotDelivered`` reasons, and the ``Binding`` of one criterion; with the ``Evidence`` a value rests on and the
``Comparator`` it is judged by. The bindings themselves are ``harness.roadmap.criteria``'s."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Evidence(str, enum.Enum):
    """What a verdict rests on (ARCHITECTURE.md, decision 5)."""

    MEASURED = "MEASURED"            # the quantity itself, measured on this machine
    PROXY = "PROXY"                  # a smaller/synthetic stand-in for the quantity
    SIMULATION = "SIMULATION"        # a schedule or system simulation
    EXTRAPOLATION = "EXTRAPOLATION"  # measured at small scale, scaled up by a stated model
    DERIVED = "DERIVED"              # computed from the other verdicts of the same commit (a roll-up)


class Comparator(str, enum.Enum):
    """How a measured value is compared with a criterion's threshold."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    WITHIN = "within"  # |value - threshold| <= tolerance

    def holds(self, value: float, threshold: float, tolerance: float = 0.0) -> bool:
        """True when ``value`` satisfies this comparison with ``threshold`` (``tolerance`` only for WITHIN).

        Args:
            value: the measured value.
            threshold: the criterion's threshold (for WITHIN: the target).
            tolerance: the allowed ``|value - threshold|`` for WITHIN; ignored by the other comparators.

        Returns:
            whether the criterion's comparison holds.
        """
        if self is Comparator.LT:
            return value < threshold
        if self is Comparator.LE:
            return value <= threshold
        if self is Comparator.GT:
            return value > threshold
        if self is Comparator.GE:
            return value >= threshold
        if self is Comparator.EQ:
            return value == threshold
        return abs(value - threshold) <= tolerance


@dataclass(frozen=True)
class Check:
    """One comparison: the value of ``benchmark`` at ``params`` against ``threshold``."""

    benchmark: str
    comparator: Comparator
    threshold: float
    unit: str
    evidence: Evidence
    params: tuple[tuple[str, Any], ...] = ()
    tolerance: float = 0.0      # only for WITHIN
    gate: bool = True           # False: context only, never decides the verdict
    note: str = ""
    # True for a peak of the host measured in the same process as the criterion's values (a GEMM rate, a
    # copy bandwidth): the regression gate reads it to tell a host that changed under a run from a commit
    # that got slower (harness.roadmap.gate.host_shift). Only meaningful with gate=False.
    calibration: bool = False
    # For a timing recorded without spread (one sample per process, e.g. a compile): the ratio between the
    # slowest and fastest value recorded across runs with no change on its path. The gate then flags it only
    # beyond the larger of this and asv's factor (harness.roadmap.gate.value_regressed). 0: none declared.
    run_to_run: float = 0.0

    @property
    def label(self) -> str:
        """Short name: ``method[param=value,...]``."""
        short = self.benchmark.rsplit(".", 1)[-1]
        if not self.params:
            return short
        return f"{short}[{','.join(f'{k}={v}' for k, v in self.params)}]"

    @property
    def threshold_text(self) -> str:
        """The threshold as reports print it, e.g. ``>= 1 ratio``."""
        if self.comparator is Comparator.WITHIN:
            return f"{self.threshold:g}±{self.tolerance:g} {self.unit}"
        return f"{self.comparator.value} {self.threshold:g} {self.unit}"

    def holds(self, value: float) -> bool:
        """True when the measured ``value`` meets this check's threshold."""
        return self.comparator.holds(value, self.threshold, self.tolerance)


@dataclass(frozen=True)
class NotMeasured:
    """A criterion this project delivers but cannot measure here, and the concrete reason (GPUs, a cluster,
    a production service, human review)."""

    reason: str


@dataclass(frozen=True)
class NotDelivered:
    """A criterion the spec asks for and this project does not build, and what is missing. Not met."""

    reason: str


@dataclass(frozen=True)
class Binding:
    """How one criterion is decided: by its checks, by a roll-up (``derived``), NOT MEASURED with the reason,
    or NOT DELIVERED with what is missing."""

    criterion_id: str
    checks: tuple[Check, ...] = ()
    not_measured: NotMeasured | None = None
    not_delivered: NotDelivered | None = None
    derived: Check | None = None   # its ``benchmark`` names an entry of DERIVED, computed by harness.roadmap.validate

    @property
    def measurable(self) -> bool:
        """True when a benchmark or a roll-up gives this criterion a value."""
        return self.not_measured is None and self.not_delivered is None

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """The evidence kinds of the gating checks (or of the roll-up), each once, in order."""
        seen: list[Evidence] = []
        for check in self.checks + ((self.derived,) if self.derived else ()):
            if check.gate and check.evidence not in seen:
                seen.append(check.evidence)
        return tuple(seen)


class BindingError(ValueError):
    """A binding that cannot be evaluated: names an unknown criterion, benchmark or parameter."""


def measured(criterion_id: str, *checks: Check) -> Binding:
    """A criterion decided by ``checks`` (the binding modules' shorthand).

    Args:
        criterion_id: the roadmap criterion's id.
        *checks: the checks that decide it, gating and context ones alike.

    Returns:
        the Binding.
    """
    return Binding(criterion_id, checks=checks)


def not_measured(criterion_id: str, reason: str) -> Binding:
    """A criterion the project delivers but cannot measure here, with the concrete ``reason``.

    Args:
        criterion_id: the roadmap criterion's id.
        reason: why no value can be measured on this host (what it would need).

    Returns:
        the Binding.
    """
    return Binding(criterion_id, not_measured=NotMeasured(reason))
