"""Context extension with YaRN. Criterion: P4.context_extension (perplexity holds at 4x the context).

One run of ``tf_impl.train.context_extension_criterion`` in ``setup_cache``: a tiny model trained
at 64 tokens, evaluated at 256 with YaRN (rope=yarn) and with plain RoPE (rope=none, context only).
"""

from __future__ import annotations

TRAIN_STEPS = 80  # training steps at the original length


class ContextExtension:
    """Perplexity at 4x original_seq_len / perplexity at original_seq_len, YaRN vs plain RoPE."""

    params = [("yarn", "none")]
    param_names = ["rope"]

    def setup_cache(self):
        from tf_impl.train import context_extension_criterion

        numbers = context_extension_criterion(factor=4, steps=TRAIN_STEPS)
        return {"yarn": numbers["ratio_yarn"], "none": numbers["ratio_plain"]}

    setup_cache.timeout = 400

    def track_ppl_ratio(self, ratios, rope):
        """P4.context_extension: perplexity at 4 x 64 tokens / at 64 tokens, same trained weights."""
        return ratios[rope]

    track_ppl_ratio.unit = "ratio"
    track_ppl_ratio.pretty_name = "Perplexity ratio at 4x context"
