"""Training losses of docs/internals.md ("Losses") and the aux-loss-free bias update, as pure functions.

``compute_loss`` is the one entry point the train step differentiates; the parts are kept apart for
logging and for the TF-vs-Flax comparison. ``tf_impl/losses.py`` is the independent TF twin.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, V vocab,
E routed experts, K experts activated per token.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from harness.config import ModelConfig


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean token cross-entropy of ``logits`` [B, T, V] against ``targets`` int [B, T], in fp32."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, T, V]
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def main_loss(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Next-token loss: ``logits[:, t]`` predicts ``tokens[:, t+1]``.

    Args:
        logits: the main model's logits of shape [B, T, V]; the last position has no target.
        tokens: the input ids of shape [B, T]; the first token is never a target.

    Returns:
        the mean cross-entropy over B * (T - 1) predictions, an fp32 scalar.
    """
    return cross_entropy(logits[:, :-1], tokens[:, 1:])


def mtp_loss(mtp_logits: list[jax.Array], tokens: jax.Array, mtp_lambda: float) -> jax.Array:
    """``(lambda / D) * sum_k CE_k``: module k's logits [B, T-k, V] at position t predict ``tokens[:, t+k+1]``."""
    if not mtp_logits:
        return jnp.zeros((), jnp.float32)
    depth = len(mtp_logits)
    losses = [cross_entropy(lg[:, :-1], tokens[:, k + 2:]) for k, lg in enumerate(mtp_logits)]  # list index k is module k+1
    return mtp_lambda / depth * sum(losses)


def balance_loss(router_scores: list[jax.Array], router_indices: list[jax.Array], alpha: float) -> jax.Array:
    """Sequence-wise balance loss ``alpha * sum_layers mean_batch sum_i f_i P_i``.

    Per sequence of length T: ``f_i = E/(K*T) * #tokens routed to i`` (no gradient: it counts a
    selection) and ``P_i = mean_t s_{t,i} / sum_j s_{t,j}`` (carries the gradient into the gate).

    Args:
        router_scores: per MoE layer, the gate's affinities of shape [B, T, E] (before top-k).
        router_indices: per MoE layer, the selected experts of shape [B, T, K].
        alpha: the balance-loss weight; DeepSeek-V3 keeps it tiny since the bias does most balancing.

    Returns:
        the loss, an fp32 scalar (0 when there are no MoE layers).
    """
    total = jnp.zeros((), jnp.float32)
    for scores, indices in zip(router_scores, router_indices):
        _, t, e = scores.shape  # [B, T, E]
        k = indices.shape[-1]
        counts = jnp.sum(jax.nn.one_hot(indices, e, dtype=jnp.float32), axis=(1, 2))  # [B, E]
        f = e / (k * t) * counts  # [B, E]
        p = jnp.mean(scores / jnp.sum(scores, axis=-1, keepdims=True), axis=1)  # [B, E]
        total = total + jnp.mean(jnp.sum(f * p, axis=-1))
    return alpha * total


def compute_loss(logits: jax.Array, aux: dict[str, Any], tokens: jax.Array, cfg: ModelConfig
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(ce + mtp + balance, {"ce", "mtp", "balance"})`` for one batch, per docs/internals.md.

    Args:
        logits: the main model's logits of shape [B, T, V]; position t predicts token t + 1.
        aux: ``forward_aux``'s dict (MTP logits and routing).
        tokens: the input ids of shape [B, T].
        cfg: supplies ``mtp_lambda`` and ``balance_alpha``.

    Returns:
        the total loss (fp32 scalar) and its three parts, kept apart for logging.
    """
    parts = {
        "ce": main_loss(logits, tokens),
        "mtp": mtp_loss(aux["mtp_logits"], tokens, cfg.mtp_lambda),
        "balance": balance_loss(aux["router_scores"], aux["router_indices"], cfg.balance_alpha),
    }
    return parts["ce"] + parts["mtp"] + parts["balance"], parts


def bias_update(bias: jax.Array, load: jax.Array, speed: float) -> jax.Array:
    """Aux-loss-free balancing: ``b_i += speed * sign(mean(load) - load_i)`` (underloaded experts gain).

    The sign makes the step size independent of how unbalanced the load is, so the bias drifts at a
    fixed, predictable rate and only steers the selection, never the gate weights.

    Args:
        bias: one gate's bias of shape [E].
        load: the tokens routed to each expert this step, of shape [E].
        speed: the update step gamma.

    Returns:
        the new bias of shape [E].
    """
    return bias + speed * jnp.sign(jnp.mean(load) - load)
