"""TF against the Flax oracle on the same canonical state: logits error, routing agreement, and the whole
equivalence suite at the bench config as checks passed and worst error.

Criteria: P0.synthetic_validation and P1.synthetic_tests. The numbers come from ``harness.interop.equivalence``, the
same code ``python -m harness equivalence`` runs.

Two tiers at ``ModelConfig.bench()``. The full suite (every check, 90M parameters: gradients, an AdamW step
of both frameworks, 32-step generation in both cache modes, the FP8 model with its control) takes about
3 CPU-minutes on 2 cores, more than the main job's budget allows, so ``EquivalenceBenchFull`` is in the
full tier (``python -m harness run --full``). The default run keeps ``EquivalenceBench``: the FP8 block
checks at the bench widths (tie cases, a weight of every FP8 shape, activations of every FP8 width, the
blocked matmul), about 10 CPU-seconds, which is where the e4m3 rounding difference hid.
"""

from __future__ import annotations

import math

CONFIGS = ("tiny",)
# An exact check (tolerance 0) that differs has an infinite error/tolerance; asv records this cap instead.
WORST_CAP = 1e6


class Equivalence:
    """Max |logits_TF - logits_Flax| and top-k routing agreement, fp32, random tokens, one config."""

    version = "1"
    params = [CONFIGS]
    param_names = ["config"]

    def setup_cache(self):
        from harness.interop.equivalence import track_numbers

        return {name: dict(track_numbers(name)) for name in CONFIGS}

    setup_cache.timeout = 300

    def track_max_abs_logits_error(self, numbers, config):
        """P0.synthetic_validation, P1.synthetic_tests: max |logits_TF - logits_Flax| over all positions."""
        return float(numbers[config]["max_abs_logits_error"])

    track_max_abs_logits_error.unit = "abs"
    track_max_abs_logits_error.pretty_name = "TF vs Flax: max abs logits error"

    def track_routing_agreement(self, numbers, config):
        """P1.synthetic_tests: fraction of (token, layer) top-k expert sets equal in TF and Flax."""
        return float(numbers[config]["routing_agreement"])

    track_routing_agreement.unit = "fraction"
    track_routing_agreement.pretty_name = "TF vs Flax: routing agreement"


def _suite(checks: tuple[str, ...]) -> dict[str, float]:
    """``harness.interop.equivalence.summary`` of ``compare`` at the bench config (``checks``; empty: all), exactly as
    ``python -m harness equivalence --config bench`` runs it (TF eager; the FP8 block checks also run TF's
    quantiser under XLA)."""
    from harness.interop.equivalence import ALL, compare, named_config
    from harness.interop.rows import summary

    return {k: float(v) for k, v in summary(compare(named_config("bench"), checks=checks or ALL)).items()}


def _fraction_passed(numbers: dict[str, float]) -> float:
    return numbers["passed"] / numbers["total"]


def _worst(numbers: dict[str, float]) -> float:
    return WORST_CAP if math.isnan(numbers["worst"]) else min(numbers["worst"], WORST_CAP)


class EquivalenceBench:
    """The FP8 block checks at the bench widths: the default tier's share of the bench equivalence."""

    version = "1"
    CHECKS = ("fp8_blocks",)

    def setup_cache(self):
        return _suite(self.CHECKS)

    setup_cache.timeout = 300

    def track_fraction_passed(self, numbers):
        """P0.synthetic_validation: FP8 block checks passed / run at ModelConfig.bench() widths (e4m3 codes and
        scales of TF eager, TF XLA and Flax against ml_dtypes on tie cases, every FP8 weight shape and
        activation width; the blocked matmul TF vs Flax)."""
        return _fraction_passed(numbers)

    track_fraction_passed.unit = "fraction"
    track_fraction_passed.pretty_name = "TF vs Flax at bench, FP8 blocks: checks passed"

    def track_worst_error_over_tolerance(self, numbers):
        """P0.synthetic_validation: the largest |error| / tolerance among those checks (1.0: at the limit;
        capped at 1e6, the value of an exact check that differs)."""
        return _worst(numbers)

    track_worst_error_over_tolerance.unit = "ratio"
    track_worst_error_over_tolerance.pretty_name = "TF vs Flax at bench, FP8 blocks: worst error / tolerance"


class EquivalenceBenchFull:
    """Every check of ``python -m harness equivalence --config bench`` (full tier)."""

    version = "2"  # 2: logits rows beyond the fp32 floor are INFO and gated by the float64 oracle (equivalence_f64)
    CHECKS = ()  # all of harness.interop.equivalence.ALL

    def setup_cache(self):
        return _suite(self.CHECKS)

    setup_cache.timeout = 1800

    def track_fraction_passed(self, numbers):
        """P0.synthetic_validation: gating checks passed / run by the whole equivalence suite at
        ModelConfig.bench() (context rows, verdict INFO, are left out of both)."""
        return _fraction_passed(numbers)

    track_fraction_passed.unit = "fraction"
    track_fraction_passed.pretty_name = "TF vs Flax at bench, all checks: checks passed"

    def track_worst_error_over_tolerance(self, numbers):
        """P0.synthetic_validation: the largest |error| / tolerance of any gating check at ModelConfig.bench()
        (1.0: at the limit; capped at 1e6, the value of an exact check that differs)."""
        return _worst(numbers)

    track_worst_error_over_tolerance.unit = "ratio"
    track_worst_error_over_tolerance.pretty_name = "TF vs Flax at bench, all checks: worst error / tolerance"
