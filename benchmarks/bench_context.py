"""Context extension at 4x the trained length. Criterion: P4.context_extension ("maintains performance").

Full tier only (``python -m harness run --full``): one ``experiments.context_extension`` run in
``setup_cache`` pretrains a small DeepSeek-V3 model (MLA with a 32-wide rope key, 2 dense layers)
for 4,000 steps of 16 x 64 tokens on passkey samples and cast documents, then loads its weights at
256 tokens with YaRN, position interpolation (pi) and plain RoPE (none), evaluates each zero-shot
and after a 40-step fine-tune at 256 tokens (1% of pretraining, same tokens per step), on passkey
retrieval at depths 0-3/4 (every needle beyond the trained distance) and on long-document perplexity.
Wall time on the 2-core host shared with other jobs: 95 s at load average ~1, 150 s at ~3, 205 s at
~10 (most of it pretraining); upper bounds. Too long for the main job's budget beside everything else. A shorter run cannot show the claim: the tiny model retrieves
the passkey within its own window only after ~2,500-3,000 steps (exact match 0.0 at 2,000 steps,
1.0 at 3,000), and without that the 4x numbers compare chance with chance.
"""

from __future__ import annotations

from experiments.context_extension import METHODS, STAGES


class ContextExtensionFull:
    """Passkey retrieval and long-document perplexity at 4x the pretraining length, per RoPE scaling."""

    version = 1
    params = [METHODS, STAGES]
    param_names = ["rope", "stage"]

    def setup_cache(self):
        from experiments.context_extension import ContextSetup, context_extension

        return context_extension(ContextSetup(), verbose=True)

    setup_cache.timeout = 1800

    def track_passkey_retention(self, result, rope, stage):
        """P4.context_extension: passkey exact-match accuracy at 4x (256 tokens) / at 1x (64 tokens, pretrained model)."""
        from experiments.context_extension import MIN_BASE_ACCURACY

        if result["passkey_acc_1x"] < MIN_BASE_ACCURACY:
            raise RuntimeError(f"the pretrained model retrieves the passkey at 1x in only {result['passkey_acc_1x']:.2f} of "
                               f"samples (< {MIN_BASE_ACCURACY}): it never learned the task, so its retention at 4x "
                               "measures nothing; pretrain longer (ContextSetup.pretrain_steps)")
        return result["results"][(rope, stage)]["passkey_retention"]

    track_passkey_retention.unit = "ratio"
    track_passkey_retention.pretty_name = "Passkey accuracy at 4x / at 1x context"

    def track_passkey_accuracy(self, result, rope, stage):
        """P4.context_extension (context): passkey exact-match accuracy at 4x, mean over depths 0, 1/4, 1/2, 3/4."""
        return result["results"][(rope, stage)]["passkey_acc_4x"]

    track_passkey_accuracy.unit = "fraction"
    track_passkey_accuracy.pretty_name = "Passkey accuracy at 4x context"

    def track_ppl_ratio(self, result, rope, stage):
        """P4.context_extension: long-document perplexity read in one 4x window / in four 1x windows, same targets."""
        return result["results"][(rope, stage)]["ppl_ratio"]

    track_ppl_ratio.unit = "ratio"
    track_ppl_ratio.pretty_name = "Long-document perplexity ratio, 4x / 1x context"
