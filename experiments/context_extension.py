"""P4.context_extension: does YaRN keep a model working at 4x the context it was trained at?

Protocol (after the YaRN paper, Peng et al. 2023, and DeepSeek-V3's 4K -> 32K -> 128K extension):

1. **Pretrain** a small DeepSeek-V3 model at ``train_len`` tokens (``max_seq_len = original_seq_len``)
   on a mixture of passkey samples and cast documents (``experiments.context_tasks``).
2. **Extend** to ``factor * train_len``: load the same weights into a model with
   ``max_seq_len = factor * train_len``, ``rope_factor = factor`` and ``rope_scaling`` one of
   ``yarn`` (DeepSeek's rule, the claim), ``pi`` (position interpolation) or ``none`` (plain RoPE
   extrapolation). Evaluate it as is (**zero-shot**), then after a **short fine-tune** at the long
   length (``finetune_steps``: 1% of the pretraining steps, same tokens per step), as YaRN and
   DeepSeek do (they fine-tune for ~0.1-0.2% of pretraining).
3. **Measure**, against the pretrained model at its own length ("1x"):
   - passkey retrieval: exact-match accuracy over key depths 0, 1/4, 1/2, 3/4 of the window. At 4x
     every one of these needles lies farther back than any distance seen in pretraining; at 1x the
     same depths are within the trained window. ``passkey_retention = acc_4x / acc_1x``.
   - long-document perplexity: cast documents of ``factor * train_len`` tokens, loss on the same
     target tokens read (1x) in ``factor`` separate windows of ``train_len`` by the pretrained model
     and (4x) in one window by the extended model; ``ppl_ratio = exp(ce_4x - ce_1x)``. Below 1 the
     model profits from the longer context; above 1 the extension hurts.

"Maintains performance" (the gate, in harness/roadmap/criteria.py): passkey_retention >= 0.9 and
ppl_ratio <= 1.10 for YaRN, zero-shot (the rule itself; the condition that tells the methods apart)
and after the fine-tune (DeepSeek's procedure). PI and plain RoPE are context. Retention is only
defined when the pretrained model retrieves at 1x (``MIN_BASE_ACCURACY``); a pretraining that did not
learn the task cannot say anything about extending it. What the proxy keeps: RoPE on MLA's decoupled rope key with DeepSeek's YaRN formulas
(correction range from beta_fast/beta_slow, mscale), a model that learned in-context retrieval only
within its training window, and tasks that fail unless attention works at unseen distances. What it
cannot say about 671B: the lengths are 64 -> 256 tokens, not 4K -> 128K (factor 4, not 40), so YaRN's
unscaled high-frequency band (pairs rotating > beta_fast times per original context) is empty here
and YaRN differs from PI by its ramp pairs and its softmax temperature only; the model is tiny and
byte-level, and the tasks are synthetic.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from harness.config import ModelConfig, RopeScaling, TrainConfig
from experiments.context_tasks import cast_documents, passkey_batch, passkey_correct

METHODS = tuple(s.value for s in RopeScaling)   # ("yarn", "pi", "none")
STAGES = ("finetuned", "zero-shot")
EVAL_SEED = 20231031                            # the evaluation sets do not depend on the training seed
MIN_BASE_ACCURACY = 0.5                         # passkey accuracy at 1x below which retention means nothing


@dataclass(frozen=True)
class ContextSetup:
    """Sizes of the experiment; the defaults are the full-tier run (benchmarks/bench_context.py)."""

    train_len: int = 64
    factor: int = 4
    pretrain_steps: int = 4000
    finetune_steps: int = 40          # 1% of pretraining (YaRN and DeepSeek fine-tune for ~0.1-0.2%)
    batch_size: int = 16              # sequences per pretraining step; the fine-tune uses batch_size // factor
    lr: float = 3e-3
    finetune_lr: float = 1e-3
    passkey_share: float = 0.75       # share of each training batch that is passkey samples (rest: cast docs)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    eval_per_depth: int = 32
    eval_docs: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factor < 2 or self.batch_size % self.factor:
            raise ValueError(f"factor={self.factor} must be >= 2 and divide batch_size={self.batch_size}")
        if not 0.0 < self.passkey_share < 1.0:
            raise ValueError(f"passkey_share={self.passkey_share} must lie strictly between 0 and 1")

    @property
    def long_len(self) -> int:
        """The extended context, ``factor * train_len``."""
        return self.factor * self.train_len


def model_config(setup: ContextSetup) -> ModelConfig:
    """The pretraining config: ``ModelConfig.tiny`` at ``train_len`` with a 32-wide rope key.

    R = 32 (tiny has 8) gives RoPE 16 frequency pairs, so the model can form sharp relative-position
    heads (a 2-layer model learns in-context copying about 4x faster than with 4 pairs); V3 has 32
    pairs. Dense FFNs and no MTP: neither touches position, and each halves the cost of a step.
    """
    return ModelConfig.tiny(max_seq_len=setup.train_len, original_seq_len=setup.train_len,
                            rope_factor=float(setup.factor), qk_rope_head_dim=32, qk_nope_head_dim=32,
                            n_dense_layers=2, n_mtp_modules=0)


def extended_config(setup: ContextSetup, method: str) -> ModelConfig:
    """The same model at ``factor * train_len`` with ``rope_scaling = method``."""
    return model_config(setup).replace(max_seq_len=setup.long_len, rope_scaling=method)


def training_batches(setup: ContextSetup, length: int, batch_size: int, rng: np.random.Generator):
    """Endless int32 [batch_size, length] batches: passkey samples (uniform depth), then cast documents."""
    n_key = max(1, round(setup.passkey_share * batch_size))
    while True:
        keys = passkey_batch(rng, n_key, length).tokens
        yield np.concatenate([keys, cast_documents(rng, batch_size - n_key, length)])


def _forward(model):
    import tensorflow as tf

    return tf.function(model.__call__)  # graph mode; one trace per input shape


def passkey_accuracy(model, setup: ContextSetup, length: int) -> list[float]:
    """Exact-match passkey accuracy at each of ``setup.depths``, ``eval_per_depth`` samples of ``length`` tokens."""
    forward, rng = _forward(model), np.random.default_rng([EVAL_SEED, length])
    accuracy = []
    for depth in setup.depths:
        batch = passkey_batch(rng, setup.eval_per_depth, length, depth)
        accuracy.append(float(passkey_correct(forward(batch.tokens).numpy(), batch.tokens).mean()))
    return accuracy


def _token_losses(forward, tokens: np.ndarray) -> np.ndarray:
    """Cross-entropy of each next token: [B, T] tokens -> [B, T-1] nats."""
    from scipy.special import log_softmax

    logp = log_softmax(forward(tokens).numpy().astype(np.float64)[:, :-1], axis=-1)  # [B, T-1, V]
    return -np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]                  # [B, T-1]


def document_losses(base, extended, setup: ContextSetup) -> tuple[float, float]:
    """Mean loss on the same targets of ``eval_docs`` cast documents: (1x in windows, 4x in one window).

    The 1x read cuts each [factor * L] document into ``factor`` windows of L, so the first token of
    each window has no prediction; those targets are dropped from the 4x read as well.
    """
    docs = cast_documents(np.random.default_rng([EVAL_SEED, 1]), setup.eval_docs, setup.long_len)  # [B, 4L]
    windows = docs.reshape(-1, setup.train_len)                                        # [B * factor, L]
    ce_1x = _token_losses(_forward(base), windows)                                     # [B * factor, L-1]
    ce_4x = _token_losses(_forward(extended), docs)                                    # [B, 4L-1]; target t+1
    keep = np.arange(1, setup.long_len) % setup.train_len != 0                         # drop window starts
    return float(ce_1x.mean()), float(ce_4x[:, keep].mean())


def _train(model, cfg: ModelConfig, steps: int, lr: float, warmup: int, batches) -> list[dict]:
    from tf_impl.train import Trainer

    trainer = Trainer(model, cfg, TrainConfig(lr=lr, warmup_steps=warmup, total_steps=steps), progress=False)
    return trainer.fit(steps, batches=batches)


def _stderr_log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def context_extension(setup: ContextSetup = ContextSetup(), verbose: bool = False) -> dict:
    """Pretrain, extend with each method, fine-tune, and measure (see the module docstring).

    Returns ``{"passkey_1x": [acc per depth], "passkey_acc_1x", "ce_1x", "pretrain_final_loss",
    "results": {(method, stage): {"passkey_4x": [...], "passkey_acc_4x", "passkey_retention",
    "ce_4x", "ppl_ratio"}}, "wall_s"}``.
    """
    from tf_impl.model import Transformer

    log = _stderr_log if verbose else (lambda message: None)
    start = time.perf_counter()
    cfg = model_config(setup)
    base = Transformer(cfg, seed=setup.seed, compiled=False)
    history = _train(base, cfg, setup.pretrain_steps, setup.lr, 20,
                     training_batches(setup, setup.train_len, setup.batch_size, np.random.default_rng([setup.seed, 0])))
    state = base.state_dict()
    passkey_1x = passkey_accuracy(base, setup, setup.train_len)
    acc_1x = float(np.mean(passkey_1x))
    log(f"context experiment: pretrained {setup.pretrain_steps} steps at {setup.train_len}, loss "
        f"{np.mean([r['loss'] for r in history[-20:]]):.3f}, passkey at 1x {passkey_1x} "
        f"({time.perf_counter() - start:.0f} s)")
    results, ce_1x = {}, None
    for method in METHODS:
        ext_cfg = extended_config(setup, method)
        extended = Transformer(ext_cfg, seed=setup.seed, compiled=False)
        extended.load_state_dict(state)
        for stage in reversed(STAGES):  # zero-shot first, then fine-tune the same model
            if stage == "finetuned":
                batches = training_batches(setup, setup.long_len, setup.batch_size // setup.factor,
                                           np.random.default_rng([setup.seed, 1]))
                _train(extended, ext_cfg, setup.finetune_steps, setup.finetune_lr, 5, batches)
            passkey_4x = passkey_accuracy(extended, setup, setup.long_len)
            ce_1x, ce_4x = document_losses(base, extended, setup)
            acc_4x = float(np.mean(passkey_4x))
            results[(method, stage)] = {
                "passkey_4x": passkey_4x, "passkey_acc_4x": acc_4x,
                "passkey_retention": acc_4x / acc_1x if acc_1x > 0 else math.nan,
                "ce_4x": ce_4x, "ppl_ratio": math.exp(ce_4x - ce_1x)}
            log(f"context experiment: {method} {stage}: passkey at {setup.factor}x {passkey_4x}, "
                f"ppl ratio {results[(method, stage)]['ppl_ratio']:.3f} ({time.perf_counter() - start:.0f} s)")
    return {"passkey_1x": passkey_1x, "passkey_acc_1x": acc_1x, "ce_1x": ce_1x,
            "pretrain_final_loss": float(np.mean([r["loss"] for r in history[-20:]])),
            "results": results, "wall_s": time.perf_counter() - start}
