"""The optimizer: AdamW with linear warmup and cosine decay, as ``optax`` computes it.

``tf_impl/optim.py`` is the independent TF twin (docs/internals.md gives the formula both follow):
clip the gradients to a global norm, Adam moments, decoupled weight decay on every trained tensor
(the gate biases are not trained: the balancing rule moves them).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import optax

from harness.config import TrainConfig


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


def optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """Clip, Adam moments, decoupled weight decay; the learning rate is applied by ``adamw_step``."""
    return optax.chain(optax.clip_by_global_norm(tc.clip_norm),
                       optax.scale_by_adam(b1=tc.b1, b2=tc.b2, eps=tc.eps),
                       optax.add_decayed_weights(tc.weight_decay))


@functools.partial(jax.jit, static_argnums=0)
def adamw_step(tc: TrainConfig, params: Any, optimizer_state: Any, grads: Any, lr: float | jax.Array
               ) -> tuple[Any, Any]:
    """One AdamW update ``p - lr * u`` of any pytree of fp32 arrays (clip, Adam moments, decoupled decay).

    ``reference.train.train_step`` applies it to the model's parameters; the equivalence harness applies
    it to a canonical state with given gradients, to compare the optimizer alone with tf_impl's.

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
        optimizer_state = optimizer(tc).init(params)
    updates, optimizer_state = optimizer(tc).update(grads, optimizer_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), optimizer_state
