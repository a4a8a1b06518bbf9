"""The GRPO rows of the equivalence suite: ``tf_impl.alignment`` against ``reference.alignment``.

One canonical batch: two prompts with a group of G = 2 completions each (rewards 1, 0 and 0, 1, so
every advantage is +-1/(0.5 + ADV_EPS)), the first ``PROMPT`` tokens masked out as the prompt and the
last completion ending early (padding masked out too). The sampling policy's and the reference policy's
log-probs are the reference model's own log-probs shifted by seeded per-token offsets chosen from
``OFFSETS``: each gives a ratio ``pi / pi_old = exp(-offset)`` at least 0.08 away from the clip edges
``1 +- CLIP_EPS``, so tokens are clipped on both sides and unclipped, and the min/clip branch every token
takes is the same in both frameworks (a ratio within an fp32 ulp of an edge would take different
branches and a gradient of 0 on one side only: a difference of branch, not of numerics). Both models
hold the same state; loss and gradients of every trained tensor are compared against
``TOLERANCES["grpo_loss"]`` and ``TOLERANCES["grpo_gradients"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.config import ModelConfig
from harness.interop.rows import Row, compare_row as _row, merge_rows as _merge

GROUP = 2
PROMPT = 6                                         # leading tokens of each sequence that are prompt
CLIP_EPS, BETA = 0.2, 0.04
OFFSETS = (-0.5, -0.3, -0.1, 0.05, 0.1, 0.4)       # log pi_old - log pi: ratios 1.65 1.35 1.11 0.95 0.90 0.67


def canonical_batch(cfg: ModelConfig, flax_model: Any, rng: np.random.Generator, seq_len: int = 24
                    ) -> dict[str, np.ndarray]:
    """Tokens [4, T], mask [4, T-1], old and ref log-probs [4, T-1], advantages [4] (see module docstring).

    Args:
        cfg: the model config (vocabulary and ``max_seq_len``).
        flax_model: the ``reference.Transformer`` whose log-probs the old and reference ones are offset from.
        rng: draws the tokens and the per-token offsets.
        seq_len: T, capped at ``cfg.max_seq_len``; the prompt is the first ``PROMPT`` tokens.

    Returns:
        ``{"tokens", "mask", "old_logp", "ref_logp", "advantages"}``, int32 tokens and float32 the rest.
    """
    from reference.alignment import group_advantages, next_token_log_probs

    b, t = 2 * GROUP, min(seq_len, cfg.max_seq_len)
    tokens = rng.integers(0, cfg.vocab_size, (b, t)).astype(np.int32)
    mask = np.zeros((b, t - 1), np.float32)
    mask[:, PROMPT - 1:] = 1.0                     # target t+1 is a completion token from position PROMPT on
    mask[-1, t // 2:] = 0.0                        # the last completion stopped early
    logits, _ = flax_model.forward_aux(tokens)
    logp = np.asarray(next_token_log_probs(logits, tokens))                    # [B, S]
    old = logp + rng.choice(OFFSETS, logp.shape)
    ref = logp + rng.choice(OFFSETS, logp.shape)
    advantages = np.asarray(group_advantages(np.array([1.0, 0.0, 0.0, 1.0]), GROUP))
    return {"tokens": tokens, "mask": mask, "old_logp": old.astype(np.float32),
            "ref_logp": ref.astype(np.float32), "advantages": advantages.astype(np.float32)}


def grpo_rows(pair: Any) -> list[Row]:
    """GRPO loss, advantages and gradients of every trained tensor, TF vs Flax, on the canonical batch.

    Args:
        pair: the comparison's models and inputs (``equivalence._Pair``: ``cfg``, ``tf``, ``flax``, ``rng``),
            both models holding the same state.

    Returns:
        the advantages and loss rows, and one merged row over the gradients of every trained tensor (a
        failing row when the two sides' gradient names differ).
    """
    import tensorflow as tf

    from reference.alignment import grpo_loss_and_gradients as flax_grpo
    from tf_impl.alignment import group_advantages as tf_advantages
    from tf_impl.alignment import grpo_loss_and_gradients as tf_grpo

    batch = canonical_batch(pair.cfg, pair.flax, pair.rng)
    args = (batch["tokens"], batch["mask"], batch["old_logp"], batch["ref_logp"], batch["advantages"])
    loss_t, grads_t = tf_grpo(pair.tf, *args, clip_eps=CLIP_EPS, beta=BETA)
    loss_f, grads_f = flax_grpo(pair.flax, *args, clip_eps=CLIP_EPS, beta=BETA)
    adv_t = tf_advantages(tf.constant([1.0, 0.0, 0.0, 1.0]), GROUP).numpy()
    rows = [_row("GRPO: group-normalised advantages", adv_t, batch["advantages"], "grpo_loss"),
            _row("GRPO: loss (clipped ratio, k3 KL, no value function)", loss_t, loss_f, "grpo_loss")]
    if set(grads_t) != set(grads_f):
        only_t, only_f = sorted(set(grads_t) - set(grads_f)), sorted(set(grads_f) - set(grads_t))
        return rows + [Row("GRPO: gradients", np.inf, np.inf, rows[-1].tolerance, None, False,
                           f"names differ: only TF {only_t[:3]}, only Flax {only_f[:3]}")]
    per = [_row(n, grads_t[n], grads_f[n], "grpo_gradients", note=n) for n in sorted(grads_f)]
    worst = max(per, key=lambda r: r.error_over_tolerance)
    failed = [r.note for r in per if not r.passed]
    rows.append(_merge(f"GRPO: gradients w.r.t. all {len(per)} trained tensors", per,
                       note=f"failed: {', '.join(failed[:5])}" if failed else f"worst {worst.note}"))
    return rows
