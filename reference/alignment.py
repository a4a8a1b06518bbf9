"""GRPO's objective in JAX: the oracle that ``tf_impl.alignment`` is checked against.

Written from the papers (DeepSeekMath, Shao et al. 2024, eq. 3 with outcome supervision; DeepSeek-R1,
eq. 1-3), not from the TF code; the contract the two share is the formula in ``docs/internals.md``
("GRPO"). Letters: B completions (prompts x group size G), T tokens, S = T - 1 predicted positions, V vocab.

For completion i of a group of G sampled for one prompt, with outcome reward r_i:

    A_i = (r_i - mean_j r_j) / (std_j r_j + ADV_EPS)              std: population (ddof 0)
    rho_it = pi(o_it | q, o_<t) / pi_old(o_it | q, o_<t)
    kl_it = pi_ref / pi - log(pi_ref / pi) - 1                     (Schulman's k3 estimator, >= 0)
    J = mean_i  (1 / |o_i|) sum_t [ min(rho A_i, clip(rho, 1 - eps, 1 + eps) A_i) - beta kl_it ]

and the loss is -J. The advantage is the same for every token of a completion and nothing is learned
to predict it: the group mean is the baseline, so there is no value network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from numpy.typing import ArrayLike

from reference.model import Transformer, to_canonical

ADV_EPS = 1e-4  # keeps a group of equal rewards at zero advantage instead of 0/0


def next_token_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """``log p(tokens[:, t+1] | tokens[:, :t+1])`` of logits [B, T, V] and tokens [B, T]: [B, S] in fp32."""
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)       # [B, S, V]
    targets = tokens[:, 1:].astype(jnp.int32)[..., None]                          # [B, S, 1]
    return jnp.take_along_axis(logp, targets, axis=-1)[..., 0]                    # [B, S]


def group_advantages(rewards: jax.Array, group_size: int) -> jax.Array:
    """Outcome rewards [P * G] (groups of G consecutive) -> advantages [P * G], normalised per group."""
    r = jnp.asarray(rewards, jnp.float32).reshape(-1, group_size)                 # [P, G]
    return ((r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + ADV_EPS)).reshape(-1)


def grpo_objective(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array, advantages: jax.Array,
                   mask: jax.Array, clip_eps: float, beta: float) -> jax.Array:
    """The loss -J (module docstring) of log-probs [B, S] under pi, pi_old, pi_ref, advantages [B], mask [B, S]."""
    ratio = jnp.exp(logp - old_logp)                                             # [B, S]
    a = advantages[:, None]                                                      # [B, 1]
    surrogate = jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a)
    q = jnp.exp(ref_logp - logp)                                                 # pi_ref / pi
    kl = q - jnp.log(q) - 1.0
    per_completion = ((surrogate - beta * kl) * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)  # [B]
    return -per_completion.mean()


def grpo_loss_and_gradients(model: Transformer, tokens: ArrayLike, mask: ArrayLike, old_logp: ArrayLike,
                            ref_logp: ArrayLike, advantages: ArrayLike, clip_eps: float, beta: float
                            ) -> tuple[float, dict[str, np.ndarray]]:
    """``(loss, {canonical name: d loss / d tensor})`` of GRPO on one batch of completions through ``model``.

    Args:
        model: the policy (``reference.Transformer``); its logits come from ``forward_aux`` (the training path).
        tokens: prompt + completion ids, int [B, T].
        mask: [B, S], 1 where the target token t + 1 belongs to the completion.
        old_logp: log-probs of the same targets under the sampling policy pi_old, [B, S].
        ref_logp: log-probs of the same targets under the frozen reference policy pi_ref, [B, S].
        advantages: one per completion, [B].
        clip_eps: the ratio clip range epsilon.
        beta: the KL penalty weight.

    Returns:
        the loss and its gradient for every trained tensor, by DeepSeek name ([out, in] layouts).
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731

    def loss_fn(params):
        logits, _ = nnx.merge(model.graphdef, params, model.biases).forward_aux(tokens)
        return grpo_objective(next_token_log_probs(logits, tokens), f32(old_logp), f32(ref_logp),
                              f32(advantages), f32(mask), clip_eps, beta)

    loss, grads = jax.value_and_grad(loss_fn)(model.params)
    return float(loss), to_canonical(grads, model.cfg.n_routed_experts)
