"""Training: the model-level loss, gradients and one AdamW step with the bias update, all jitted.

The pieces are pure and live beside this: the losses in ``reference.losses``, the optimizer in
``reference.optim``. The functions here take the public ``Transformer`` (its ``graphdef`` and
variable states) and replace its states with the updated ones.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from flax import nnx
from numpy.typing import ArrayLike

from harness.config import ModelConfig, TrainConfig
from reference.losses import bias_update, compute_loss
from reference.model import DeepSeekV3, InputError, Transformer, to_canonical
from reference.optim import adamw_step, learning_rate, optimizer


def moe_bias_paths(cfg: ModelConfig) -> list[tuple]:
    """State paths of the gate biases in ``expert_load`` order: main MoE layers, then MTP blocks."""
    paths = [("layers", i, "ffn", "gate", "bias") for i in range(cfg.n_layers) if cfg.is_moe_layer(i)]
    paths += [("mtp", k, "block", "ffn", "gate", "bias") for k in range(cfg.n_mtp_modules)
              if cfg.is_moe_layer(cfg.n_layers + k)]
    return paths


def _loss_and_load(params, graphdef, biases, tokens):
    """``(loss, (parts, expert_load))`` of one batch; differentiable in ``params``."""
    module: DeepSeekV3 = nnx.merge(graphdef, params, biases)
    logits, aux = module.forward_aux(tokens)
    loss, parts = compute_loss(logits, aux, tokens, module.cfg)
    return loss, (parts, aux["expert_load"])


@functools.partial(jax.jit, static_argnums=0)
def _loss(graphdef, params, biases, tokens):
    loss, (parts, _) = _loss_and_load(params, graphdef, biases, tokens)
    return loss, parts


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_grads(graphdef, params, biases, tokens):
    """``((loss, (parts, expert_load)), grads)``; shared by ``gradients`` and ``train_step`` (one compile)."""
    return jax.value_and_grad(_loss_and_load, has_aux=True)(params, graphdef, biases, tokens)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(cfg, tc, params, biases, opt_state, grads, load, lr):
    """AdamW update of ``params`` and the balancing update of every gate bias from ``load`` [n_moe_layers, E]."""
    params, opt_state = adamw_step(tc, params, opt_state, grads, lr)
    flat = dict(nnx.to_flat_state(biases))
    for layer, path in enumerate(moe_bias_paths(cfg)):
        flat[path] = flat[path].replace(bias_update(flat[path][...], load[layer], cfg.bias_update_speed))
    return params, nnx.from_flat_state(list(flat.items())), opt_state


def _check_length(model: Transformer, tokens) -> jax.Array:
    tokens = model.check_tokens(tokens)
    need = model.cfg.n_mtp_modules + 2
    if tokens.shape[1] < need:
        raise InputError(f"training needs T >= n_mtp_modules + 2 = {need} tokens so every loss has a target; "
                         f"got T={tokens.shape[1]}")
    return tokens


def total_loss(model: Transformer, tokens: ArrayLike) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(ce + mtp + balance, {"ce", "mtp", "balance"})`` for ``tokens`` [B, T]."""
    return _loss(model.graphdef, model.params, model.biases, _check_length(model, tokens))


def gradients(model: Transformer, tokens: ArrayLike) -> dict[str, np.ndarray]:
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
    return optimizer(tc).init(model.params)


def train_step(model: Transformer, optimizer_state: Any, tokens: ArrayLike, step: int,
               tc: TrainConfig = TrainConfig()) -> tuple[Any, jax.Array, dict[str, jax.Array]]:
    """One AdamW step on ``tokens`` [B, T] at learning rate ``learning_rate(step, tc)``, then the bias
    update from this step's expert loads. Updates ``model`` in place; returns
    ``(optimizer_state, loss, parts)`` with the loss measured before the update."""
    tokens = _check_length(model, tokens)
    (loss, (parts, load)), grads = _loss_and_grads(model.graphdef, model.params, model.biases, tokens)
    model.params, model.biases, optimizer_state = _apply(model.cfg, tc, model.params, model.biases, optimizer_state,
                                                         grads, load, learning_rate(step, tc))
    return optimizer_state, loss, parts
