"""FP8 (e4m3, 128x128 weight blocks, 1x128 activation blocks): inference error and training stability.

Criterion: P1.fp8_stable ("FP8 training stable, < 0.25% relative loss error"; the logits error is
context). Both numbers are computed once in ``setup_cache``.
"""

from __future__ import annotations

from . import common

LOGITS_TOKENS = (4, 64)   # [B, T] random tokens for the logits comparison (tiny: max_seq_len 64)
TRAIN_STEPS = 40          # steps of each run (fp32, fp8) of tf_impl.train.fp8_criterion


def _logits_rel_error() -> float:
    """||logits_fp8 - logits_fp32||_F / ||logits_fp32||_F, ``ModelConfig.tiny()``, same canonical state."""
    import numpy as np

    from harness.config import Dtype
    from tf_impl.model import Transformer

    cfg = common.config("tiny")
    toks = common.tokens(*LOGITS_TOKENS, cfg.vocab_size)
    logits = {}
    for dtype in (Dtype.FLOAT32, Dtype.FP8):
        model = Transformer(cfg.replace(dtype=dtype), seed=common.SEED)
        model.load_state_dict(dict(common.canonical_state(cfg)))
        logits[dtype] = model(toks).numpy().astype(np.float64)
    ref = logits[Dtype.FLOAT32]
    return float(np.linalg.norm(logits[Dtype.FP8] - ref) / np.linalg.norm(ref))


class FP8:
    """FP8 against fp32 on the same weights (logits) and the same short training run (loss)."""

    def setup_cache(self):
        from tf_impl.train import fp8_criterion

        return {"logits_rel_error": _logits_rel_error(),
                "training_loss_gap": fp8_criterion(steps=TRAIN_STEPS)["relative_gap"]}

    setup_cache.timeout = 400

    def track_logits_rel_error(self, numbers):
        """P1.fp8_stable (context): Frobenius relative error of FP8 logits against fp32, tiny config."""
        return numbers["logits_rel_error"]

    track_logits_rel_error.unit = "fraction"
    track_logits_rel_error.pretty_name = "FP8 vs fp32 logits, relative error"

    def track_training_loss_gap(self, numbers):
        """P1.fp8_stable: |final loss fp8 - fp32| / fp32 after the same short run (tf_impl.train.fp8_criterion)."""
        return numbers["training_loss_gap"]

    track_training_loss_gap.unit = "fraction"
    track_training_loss_gap.pretty_name = "FP8 vs fp32 training, relative final-loss gap"
