"""Multi-Token Prediction as a speculative-decoding drafter: acceptance and speed-up.

Criterion: P2.mtp_speedup ("MTP speculative decoding > 1.5x"; acceptance is context). Both numbers
come from one run of ``experiments.mtp_speedup.mtp_criterion()`` (train a model with its MTP
module, then greedy vs self-speculative decoding on the same prompts, outputs checked identical),
done once in ``setup_cache``.

``MTP`` runs on ``tiny`` (2 layers), where the MTP module costs ~66% of a trunk forward, so it cannot
show the claim at any acceptance. ``MTPProxyFull`` runs on the ``mtp_proxy`` preset (32 thin layers),
whose drafter/trunk cost ratio is DeepSeek-V3's (~4.6% vs 4.4%, ``experiments.mtp_speedup.mtp_cost_ratio``);
training its 32 layers takes minutes on two cores, so it is in the full tier
(``python -m harness run --full``).
"""

from __future__ import annotations

from . import common

TRAIN_STEPS = 200  # acceptance is ~0.85 by here on the shipped corpus; 300 steps gives ~0.88
PROMPTS, REPEATS = 2, 4  # 8 alternating greedy/speculative pairs: the speed-up samples asv records


class MTP:
    """Greedy self-speculative decoding with MTP module 0 as the drafter, against plain greedy decoding."""

    def setup_cache(self):
        from experiments.mtp_speedup import mtp_criterion

        numbers = mtp_criterion(steps=TRAIN_STEPS, n_prompts=PROMPTS, repeats=REPEATS)
        if numbers["identical"] != 1.0:
            # A speed-up of a decoder whose output differs from greedy measures nothing: fail loudly.
            raise RuntimeError(f"speculative decoding output differs from greedy decoding: {numbers}")
        return numbers

    setup_cache.timeout = 300

    def track_acceptance_rate(self, numbers):
        """P2.mtp_speedup (context): fraction of MTP draft tokens the main model accepts (greedy)."""
        return float(numbers["acceptance_rate"])

    track_acceptance_rate.unit = "fraction"
    track_acceptance_rate.pretty_name = "MTP draft acceptance rate"
    # the source hash asv recorded before the suite declared versions (issue 12): the same series
    track_acceptance_rate.version = "cf3b0f6611fac441660d82a122d5a921491b238ebe9da3a786a411a77779e8a4"

    def track_speculative_speedup(self, numbers):
        """P2.mtp_speedup: tokens/s with MTP speculative decoding / tokens/s of plain greedy decoding,
        the median of alternating timing pairs (asv records their spread)."""
        return common.sampled(numbers["speedup_samples"])

    track_speculative_speedup.unit = "ratio"
    track_speculative_speedup.version = "2"  # 2: median of 8 alternating pairs (was: mean of 2 best-of-2 ratios)
    track_speculative_speedup.pretty_name = "MTP speculative decoding speed-up"


PROXY_STEPS = 300  # the deep proxy learns slower per step than tiny; acceptance is what this buys


class MTPProxyFull:
    """The same comparison on ``ModelConfig.mtp_proxy`` (DeepSeek-V3's MTP/trunk cost ratio), full tier."""

    version = "1"

    def setup_cache(self):
        from experiments.mtp_speedup import mtp_criterion

        numbers = mtp_criterion(steps=PROXY_STEPS, n_prompts=PROMPTS, repeats=REPEATS, config="mtp_proxy")
        if numbers["identical"] != 1.0:
            raise RuntimeError(f"speculative decoding output differs from greedy decoding: {numbers}")
        return numbers

    setup_cache.timeout = 3600

    def track_acceptance_rate(self, numbers):
        """P2.mtp_speedup (context): draft acceptance on the deep-thin proxy, greedy, batch 1."""
        return float(numbers["acceptance_rate"])

    track_acceptance_rate.unit = "fraction"
    track_acceptance_rate.pretty_name = "MTP draft acceptance rate (mtp_proxy, V3 cost ratio)"

    def track_speculative_speedup(self, numbers):
        """P2.mtp_speedup: speculative / greedy tokens/s on the deep-thin proxy, median of alternating pairs."""
        return common.sampled(numbers["speedup_samples"])

    track_speculative_speedup.unit = "ratio"
    track_speculative_speedup.pretty_name = "MTP speculative decoding speed-up (mtp_proxy, V3 cost ratio)"

    def track_call_cost_ratio(self, numbers):
        """P2.mtp_speedup (context): one speculative call (verify 2 tokens in one forward, draft the next)
        over one greedy step, derived as tokens per call / speed-up; the speed-up is (1 + acceptance)
        over this, so it says what limits the claim on this machine."""
        return float(numbers["call_cost_ratio"])

    track_call_cost_ratio.unit = "ratio"
    track_call_cost_ratio.pretty_name = "MTP speculative call cost / greedy step cost (mtp_proxy)"

    def track_cost_ratio(self, numbers):
        """P2.mtp_speedup (context): weights the MTP module activates over a trunk forward's (V3: 0.044)."""
        return float(numbers["cost_ratio"])

    track_cost_ratio.unit = "ratio"
    track_cost_ratio.pretty_name = "MTP module cost / trunk cost (mtp_proxy)"
