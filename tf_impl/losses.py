"""Training losses of docs/internals.md ("Losses") and the aux-loss-free bias update, as pure functions.

``compute_loss`` is the one entry point the train step differentiates; the parts are kept apart for
logging and for the TF-vs-Flax comparison. ``reference/losses.py`` is the independent Flax twin.

- ``ce = mean CE(logits[:, :-1], tokens[:, 1:])``;
- ``mtp = (mtp_lambda / D) * sum_k mean CE(mtp_logits_k[:, :-1], tokens[:, k+1:])``;
- ``balance = balance_alpha * sum_layers mean_batch sum_i f_i P_i``;
- ``loss = ce + mtp + balance``;
- after each step every gate bias moves by ``bias_update_speed * sign(mean(load) - load_i)`` from the
  step's real expert counts; the bias is a non-trainable variable, never touched by gradients.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, V vocab,
E routed experts, K experts activated per token, L MoE layers (main layers, then MTP blocks).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from harness.config import ModelConfig


def cross_entropy(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean token cross-entropy of logits [B, T, V] against int targets [B, T], in fp32."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(targets, tf.int32), logits=tf.cast(logits, tf.float32))
    )


def main_loss(logits: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
    """Next-token loss: ``logits[:, t]`` [B, T, V] predicts ``tokens[:, t+1]`` [B, T]; mean over B * (T - 1)."""
    return cross_entropy(logits[:, :-1], tokens[:, 1:])


def mtp_loss(mtp_logits: Sequence[tf.Tensor], tokens: tf.Tensor, mtp_lambda: float) -> tf.Tensor:
    """``(mtp_lambda / D) * sum_k CE(mtp_logits_k[:, :-1], tokens[:, k+1:])``; module k is 1-based, 0 when D = 0.

    Module k's position t sees tokens up to t + k and predicts token t + k + 1, so its logits are
    [B, T - k, V] and the last position has no target inside the window.

    Args:
        mtp_logits: the D MTP modules' logits, module k's of shape [B, T - k, V].
        tokens: the input ids of shape [B, T].
        mtp_lambda: the MTP loss weight (lambda), averaged over the D modules.

    Returns:
        the weighted loss, an fp32 scalar.
    """
    if not mtp_logits:
        return tf.constant(0.0)
    total = tf.add_n([cross_entropy(lk[:, :-1], tokens[:, k + 1 :]) for k, lk in enumerate(mtp_logits, start=1)])
    return (mtp_lambda / len(mtp_logits)) * total


def sequence_balance_loss(scores: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """``mean_batch sum_i f_i P_i`` of one MoE layer (without alpha).

    scores [B, T, E] are the original gate scores, indices [B, T, K] the chosen experts; positions
    whose indices are -1 are padding (an MTP block routes only T-k positions) and are left out, so T
    counts the routed positions. ``f_i = E / (K T) * count_t(i in topk_t)``,
    ``P_i = mean_t scores_t,i / sum_j scores_t,j``.
    """
    n_experts, k = scores.shape[-1], indices.shape[-1]
    valid = tf.cast(indices[..., 0] >= 0, tf.float32)  # [B, T]
    t = tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)[:, None]  # [B, 1]
    counts = tf.reduce_sum(tf.one_hot(indices, n_experts, dtype=tf.float32), axis=[1, 2])  # [B, E]; -1 -> zeros
    f = tf.stop_gradient(counts * (n_experts / k) / t)  # [B, E]
    denom = tf.reduce_sum(scores, axis=-1, keepdims=True)  # [B, T, 1]
    probs = scores / tf.where(denom > 0, denom, 1.0) * valid[..., None]  # [B, T, E]
    p = tf.reduce_sum(probs, axis=1) / t  # [B, E]
    return tf.reduce_mean(tf.reduce_sum(f * p, axis=-1))


def balance_loss(router_scores: tf.Tensor, router_indices: tf.Tensor, alpha: float) -> tf.Tensor:
    """``alpha * sum_layers sequence_balance_loss`` over the MoE layers (0 when alpha = 0).

    With alpha = 0 the routing tensors are not touched at all, so a run balanced by the bias alone
    pays nothing for this term.

    Args:
        router_scores: the gate's original scores per MoE layer, [L, B, T, E] (``forward_aux``).
        router_indices: the chosen experts per MoE layer, [L, B, T, K]; -1 marks padding.
        alpha: the balance-loss weight.

    Returns:
        the loss, an fp32 scalar.
    """
    n_layers = 0 if router_scores is None else router_scores.shape[0]
    if alpha == 0.0 or not n_layers:
        return tf.constant(0.0)
    return alpha * tf.add_n([sequence_balance_loss(router_scores[i], router_indices[i]) for i in range(n_layers)])


def compute_loss(logits: tf.Tensor, aux: dict, tokens: tf.Tensor, cfg: ModelConfig) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """``(loss, {"ce", "mtp", "balance"})`` for one batch, per docs/internals.md.

    Args:
        logits: the main model's logits of shape [B, T, V]; position t predicts token t + 1.
        aux: ``forward_aux``'s dict (MTP logits and routing tensors).
        tokens: the input ids of shape [B, T].
        cfg: supplies ``mtp_lambda`` and ``balance_alpha``.

    Returns:
        the total loss (fp32 scalar) and its three parts, kept apart for logging.
    """
    ce = main_loss(logits, tokens)
    mtp = mtp_loss(aux.get("mtp_logits") or [], tokens, cfg.mtp_lambda)
    bal = balance_loss(aux.get("router_scores"), aux.get("router_indices"), cfg.balance_alpha)
    return ce + mtp + bal, {"ce": ce, "mtp": mtp, "balance": bal}


def bias_update(bias: tf.Tensor, load: tf.Tensor, speed: float) -> tf.Tensor:
    """Aux-loss-free balancing: ``bias + speed * sign(mean(load) - load)``; under-loaded experts go up.

    The bias shifts only which experts are selected, never the mixing weights, so balancing this way
    does not push a gradient against the language-modelling loss.

    Args:
        bias: one gate's selection bias of shape [E] (or [L, E] for all layers at once).
        load: token counts per expert this step, of the same shape as ``bias``.
        speed: the update step gamma (``cfg.bias_update_speed``).

    Returns:
        the new bias, fp32 of the shape of ``bias``.
    """
    load = tf.cast(load, tf.float32)
    return bias + speed * tf.sign(tf.reduce_mean(load, axis=-1, keepdims=True) - load)
