"""FP8 training against full precision. Criterion: P1.fp8_stable ("< 0.25% relative loss error").

Full tier only (``python -m harness run --full``): one ``experiments.fp8_stability`` run in
``setup_cache`` trains ``ModelConfig.tiny`` widened to D = 128 (a dense and a MoE layer, no MTP;
e4m3 128x128 weight and 1x128 activation blocks) on the shipped corpus, 800 steps of 16 x 64 tokens,
in fp32 (the stand-in for BF16 on this CPU host) and in FP8 from the same init and data order, for
seeds 0-4 (ten runs).
Five seeds, not three: at the per-seed spread of the gap that three seeds showed (0.10%), Student's t
makes the 95% bound of three seeds +-0.25% wide, too wide to resolve the threshold, and five about
+-0.12%. (Five then measured a spread of 0.17%, bound 0.30%: still unresolved; see the report.)
It reports the seed mean/std of the paired relative gap of the final validation loss and its upper
95% bound (the gate), the fp32 loss's own seed-to-seed spread, and the FP8-vs-fp32 logits of the
trained fp32 weights (centred-logits relative error, KL, top-1 agreement).
Wall time on the 2-core host shared with other jobs: 445-481 s for the ten runs at load average ~1-3
(three seeds took 655 s at load ~10); upper bounds. A run of a few dozen steps cannot resolve 0.25%: along these runs the paired gap swings
by several percent up to step 300 and still by about +-0.4% between steps 600 and 800.
"""

from __future__ import annotations


class FP8StabilityFull:
    """Paired fp32/FP8 training runs over five seeds, and FP8 logits of the trained weights."""

    version = 1

    def setup_cache(self):
        from experiments.fp8_stability import FP8Setup, fp8_stability

        return fp8_stability(FP8Setup(), verbose=True)

    setup_cache.timeout = 3600

    def track_loss_gap_upper95(self, result):
        """P1.fp8_stable: |mean relative final-loss gap FP8 vs fp32| + t * sem over seeds (upper 95% bound)."""
        return result["gap_upper95"]

    track_loss_gap_upper95.unit = "fraction"
    track_loss_gap_upper95.pretty_name = "FP8 vs fp32 final-loss gap, upper 95% bound over seeds"

    def track_loss_gap_mean(self, result):
        """P1.fp8_stable (context): mean over seeds of (L_fp8 - L_fp32) / L_fp32, signed."""
        return result["gap_mean"]

    track_loss_gap_mean.unit = "fraction"
    track_loss_gap_mean.pretty_name = "FP8 vs fp32 final-loss gap, mean over seeds"

    def track_loss_gap_std(self, result):
        """P1.fp8_stable (context): std over seeds of the paired relative gap (its run-to-run spread)."""
        return result["gap_std"]

    track_loss_gap_std.unit = "fraction"
    track_loss_gap_std.pretty_name = "FP8 vs fp32 final-loss gap, std over seeds"

    def track_fp32_seed_spread(self, result):
        """P1.fp8_stable (context): std / mean of the fp32 final loss over seeds (one run's noise floor)."""
        return result["fp32_seed_spread"]

    track_fp32_seed_spread.unit = "fraction"
    track_fp32_seed_spread.pretty_name = "fp32 final loss, seed-to-seed spread"

    def track_logits_rel_error(self, result):
        """P1.fp8_stable (context): ||centred logits FP8 - fp32||_F / ||centred logits fp32||_F, trained weights."""
        return result["logits_rel_error"]

    track_logits_rel_error.unit = "fraction"
    track_logits_rel_error.pretty_name = "FP8 vs fp32 logits of the trained model, relative error"

    def track_top1_agreement(self, result):
        """P1.fp8_stable (context): share of held-out positions where FP8 and fp32 pick the same next token."""
        return result["top1_agreement"]

    track_top1_agreement.unit = "fraction"
    track_top1_agreement.pretty_name = "FP8 vs fp32 top-1 agreement, trained model"

    def track_logits_kl(self, result):
        """P1.fp8_stable (context): mean KL(p_fp32 || p_fp8) per held-out token, nats, trained weights."""
        return result["logits_kl"]

    track_logits_kl.unit = "nats"
    track_logits_kl.pretty_name = "FP8 vs fp32 KL per token, trained model"
