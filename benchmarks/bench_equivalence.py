"""TF against the Flax oracle on the same canonical state: logits error and routing agreement.

Criteria: P0.synthetic_validation and P1.synthetic_tests. The numbers come from
``harness.equivalence.track_numbers(config)``, the same code ``python -m harness equivalence`` runs.
"""

from __future__ import annotations

CONFIGS = ("tiny",)


class Equivalence:
    """Max |logits_TF - logits_Flax| and top-k routing agreement, fp32, random tokens, one config."""

    params = [CONFIGS]
    param_names = ["config"]

    def setup_cache(self):
        from harness.equivalence import track_numbers

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
