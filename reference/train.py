"""Training: the losses of docs/internals.md, aux-loss-free bias balancing, and an AdamW step.

Loss functions are pure functions of arrays; the model-level functions (``total_loss``,
``gradients``, ``train_step``) take the public ``Transformer`` and run jitted.

Axis letters: B batch, T length, V vocab, E experts, K activated experts.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.config import ModelConfig, TrainConfig
from reference.model import DeepSeekV3, Transformer, to_canonical


def learning_rate(step: int, tc: TrainConfig) -> float:
    """``lr * (step+1)/warmup_steps`` for ``step < warmup_steps`` (so step 0 already learns), then a cosine
    from ``lr`` at ``warmup_steps`` down to ``lr * min_lr_ratio`` at ``total_steps``, flat after that.

    Args:
        step: the 0-based optimizer step.
        tc: the schedule: ``lr``, ``warmup_steps``, ``total_steps``, ``min_lr_ratio``.

    Returns:
        the learning rate for ``step``, a Python float.
    """
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.total_steps - tc.warmup_steps))
    floor = tc.lr * tc.min_lr_ratio
    return floor + (tc.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- pure losses

def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean token cross-entropy of ``logits`` [B, T, V] against ``targets`` int [B, T], in fp32."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
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
        _, t, e = scores.shape  # (B, T, E)
        k = indices.shape[-1]
        counts = jnp.sum(jax.nn.one_hot(indices, e, dtype=jnp.float32), axis=(1, 2))  # (B, E)
        f = e / (k * t) * counts  # (B, E)
        p = jnp.mean(scores / jnp.sum(scores, axis=-1, keepdims=True), axis=1)  # (B, E)
        total = total + jnp.mean(jnp.sum(f * p, axis=-1))
    return alpha * total


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


def moe_bias_paths(cfg: ModelConfig) -> list[tuple]:
    """State paths of the gate biases in ``expert_load`` order: main MoE layers, then MTP blocks."""
    paths = [("layers", i, "ffn", "gate", "bias") for i in range(cfg.n_layers) if cfg.is_moe_layer(i)]
    paths += [("mtp", k, "block", "ffn", "gate", "bias") for k in range(cfg.n_mtp_modules)
              if cfg.is_moe_layer(cfg.n_layers + k)]
    return paths


# ---------------------------------------------------------------------------- model-level, jitted

def _loss_and_load(params, graphdef, biases, tokens):
    """``(loss, (parts, expert_load))`` of one batch; differentiable in ``params``."""
    module: DeepSeekV3 = nnx.merge(graphdef, params, biases)
    cfg = module.cfg
    logits, aux = module.forward_aux(tokens)
    parts = {
        "ce": main_loss(logits, tokens),
        "mtp": mtp_loss(aux["mtp_logits"], tokens, cfg.mtp_lambda),
        "balance": balance_loss(aux["router_scores"], aux["router_indices"], cfg.balance_alpha),
    }
    return parts["ce"] + parts["mtp"] + parts["balance"], (parts, aux["expert_load"])


@functools.partial(jax.jit, static_argnums=0)
def _loss(graphdef, params, biases, tokens):
    loss, (parts, _) = _loss_and_load(params, graphdef, biases, tokens)
    return loss, parts


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_grads(graphdef, params, biases, tokens):
    """``((loss, (parts, expert_load)), grads)``; shared by ``gradients`` and ``train_step`` (one compile)."""
    return jax.value_and_grad(_loss_and_load, has_aux=True)(params, graphdef, biases, tokens)


def _optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """Clip, Adam moments, decoupled weight decay; the learning rate is applied by the caller."""
    return optax.chain(optax.clip_by_global_norm(tc.clip_norm),
                       optax.scale_by_adam(b1=tc.b1, b2=tc.b2, eps=tc.eps),
                       optax.add_decayed_weights(tc.weight_decay))


@functools.partial(jax.jit, static_argnums=0)
def adamw_step(tc: TrainConfig, params: Any, optimizer_state: Any, grads: Any, lr) -> tuple[Any, Any]:
    """One AdamW update ``p - lr * u`` of any pytree of fp32 arrays (clip, Adam moments, decoupled decay).

    :func:`train_step` applies it to the model's parameters; the equivalence harness applies it to a
    canonical state with given gradients, to compare the optimizer alone with tf_impl's.

    Args:
        tc: the optimizer settings (clip norm, betas, eps, weight decay).
        params: the parameters, any pytree of fp32 arrays.
        optimizer_state: the state from the previous step, or None for a fresh one (first step).
        grads: the gradients, the same pytree as ``params``.
        lr: this step's learning rate.

    Returns:
        ``(new params, new optimizer state)``.
    """
    if optimizer_state is None:
        optimizer_state = _optimizer(tc).init(params)
    updates, optimizer_state = _optimizer(tc).update(grads, optimizer_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), optimizer_state


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(cfg, tc, params, biases, opt_state, grads, load, lr):
    """AdamW update of ``params`` and the balancing update of every gate bias from ``load`` [n_moe_layers, E]."""
    params, opt_state = adamw_step(tc, params, opt_state, grads, lr)
    flat = dict(nnx.to_flat_state(biases))
    for layer, path in enumerate(moe_bias_paths(cfg)):
        flat[path] = flat[path].replace(bias_update(flat[path][...], load[layer], cfg.bias_update_speed))
    return params, nnx.from_flat_state(list(flat.items())), opt_state


def _check_length(model: Transformer, tokens) -> jax.Array:
    tokens = model._tokens(tokens, ndim=2)
    need = model.cfg.n_mtp_modules + 2
    if tokens.shape[1] < need:
        raise ValueError(f"training needs T >= n_mtp_modules + 2 = {need} tokens so every loss has a target; "
                         f"got T={tokens.shape[1]}")
    return tokens


def total_loss(model: Transformer, tokens) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(ce + mtp + balance, {"ce", "mtp", "balance"})`` for ``tokens`` [B, T]."""
    return _loss(model.graphdef, model.params, model.biases, _check_length(model, tokens))


def gradients(model: Transformer, tokens) -> dict[str, np.ndarray]:
    """d total_loss / d every trained tensor, as ``{canonical name: np.ndarray}`` ([out, in] layouts).

    The gate biases are absent: they steer a discrete selection and are not trained by gradient.
    """
    _, grads = _loss_and_grads(model.graphdef, model.params, model.biases, _check_length(model, tokens))
    return to_canonical(grads, model.cfg.n_routed_experts)


def init_optimizer(model: Transformer, tc: TrainConfig = TrainConfig()) -> Any:
    """Fresh AdamW state (moments of every trained tensor) for :func:`train_step`.

    Args:
        model: the model whose trained tensors get moments (gate biases excluded).
        tc: the optimizer settings (clip norm, betas, eps, weight decay).

    Returns:
        the optax state to pass to, and take back from, each :func:`train_step`.
    """
    return _optimizer(tc).init(model.params)


def train_step(model: Transformer, optimizer_state: Any, tokens, step: int,
               tc: TrainConfig = TrainConfig()) -> tuple[Any, jax.Array, dict[str, jax.Array]]:
    """One AdamW step on ``tokens`` [B, T] at learning rate ``learning_rate(step, tc)``, then the bias
    update from this step's expert loads. Updates ``model`` in place; returns
    ``(optimizer_state, loss, parts)`` with the loss measured before the update."""
    tokens = _check_length(model, tokens)
    (loss, (parts, load)), grads = _loss_and_grads(model.graphdef, model.params, model.biases, tokens)
    model.params, model.biases, optimizer_state = _apply(model.cfg, tc, model.params, model.biases, optimizer_state,
                                                         grads, load, learning_rate(step, tc))
    return optimizer_state, loss, parts
