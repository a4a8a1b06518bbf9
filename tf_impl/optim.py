"""The optimizer: AdamW with linear warmup and cosine decay, as ``optax.adamw`` computes it.

``reference/optim.py`` is the independent Flax twin. Decoupled weight decay on every trainable
variable, norms included; the gate bias is not trainable, so it gets neither gradient nor decay::

    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  t = count + 1
    param -= lr(count) * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * param)

after the trainer clips the gradients to a global norm of ``clip_norm`` (``tf.clip_by_global_norm``).
``lr(count)`` is ``learning_rate``. FP8 training needs nothing here: with ``cfg.dtype == Dtype.FP8`` the
model's linears quantise on the fly and gradients pass through the quantiser straight-through; the
fp32 variables are the master weights.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from harness.config import TrainConfig


def learning_rate(step: int | float | tf.Tensor, tc: TrainConfig) -> float | tf.Tensor:
    """Learning rate of update number ``step`` (0-based; a Python number or a tensor).

    Linear warmup ``lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` updates, then a
    cosine from ``lr`` down to ``lr * min_lr_ratio`` at ``total_steps``, flat after that.
    The ``+ 1`` makes step 0 already learn. A Python step is computed on the host, a tensor step
    inside the compiled train step (from the optimizer's ``count``), with the same formula.

    Args:
        step: the 0-based update number, a Python number or a scalar tensor.
        tc: the schedule: ``lr``, ``warmup_steps``, ``total_steps``, ``min_lr_ratio``.

    Returns:
        the learning rate: a Python float for a Python ``step``, else an fp32 scalar tensor.
    """
    if isinstance(step, (int, float, np.integer, np.floating)):
        step = float(step)
        if step < tc.warmup_steps:
            return tc.lr * (step + 1.0) / tc.warmup_steps
        progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.total_steps - tc.warmup_steps))
        return tc.lr * (tc.min_lr_ratio + (1.0 - tc.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    step = tf.cast(step, tf.float32)
    warm = tc.lr * (step + 1.0) / max(1, tc.warmup_steps)
    progress = tf.minimum(1.0, (step - tc.warmup_steps) / max(1, tc.total_steps - tc.warmup_steps))
    cosine = tc.lr * (tc.min_lr_ratio + (1.0 - tc.min_lr_ratio) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
    return tf.where(step < tc.warmup_steps, warm, cosine)


class AdamW(tf.Module):
    """AdamW over a fixed list of variables, with slots ``m``, ``v`` and an update ``count``.

    ``slots()`` / ``load_slots()`` give the slots as numpy arrays named ``m.{i:04d}``, ``v.{i:04d}``
    and ``count`` (i = index into the variable list) for checkpoints.
    """

    def __init__(self, variables: Sequence[tf.Variable], tc: TrainConfig):
        super().__init__(name="adamw")
        self.tc = tc
        self.params = list(variables)
        self.m = [tf.Variable(tf.zeros_like(p), trainable=False, name=f"m{i}") for i, p in enumerate(self.params)]
        self.v = [tf.Variable(tf.zeros_like(p), trainable=False, name=f"v{i}") for i, p in enumerate(self.params)]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")

    def apply(self, grads: Sequence[tf.Tensor]) -> tf.Tensor:
        """One update from (already clipped) ``grads``; returns the learning rate used.

        The learning rate comes from ``count`` (the updates applied so far), so a restored optimizer
        continues the schedule where it stopped. Weight decay is decoupled: ``lr * weight_decay * p``
        is subtracted directly, not added to the gradient.

        Args:
            grads: one gradient per variable, in the order of the variable list given at construction.

        Returns:
            the learning rate of this update, an fp32 scalar tensor.
        """
        tc = self.tc
        lr = learning_rate(self.count, tc)
        t = tf.cast(self.count + 1, tf.float32)
        c1, c2 = 1.0 - tf.pow(tc.b1, t), 1.0 - tf.pow(tc.b2, t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = tf.convert_to_tensor(g)
            m.assign(tc.b1 * m + (1.0 - tc.b1) * g)
            v.assign(tc.b2 * v + (1.0 - tc.b2) * tf.square(g))
            p.assign_sub(lr * ((m / c1) / (tf.sqrt(v / c2) + tc.eps) + tc.weight_decay * p))
        self.count.assign_add(1)
        return lr

    def slots(self) -> dict[str, np.ndarray]:
        """The optimizer state for a checkpoint: ``count``, ``m.{i:04d}`` and ``v.{i:04d}`` as numpy copies."""
        out = {"count": np.asarray(self.count.numpy())}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"m.{i:04d}"], out[f"v.{i:04d}"] = m.numpy(), v.numpy()
        return out

    def load_slots(self, slots: dict[str, np.ndarray]) -> None:
        """Restore ``slots()`` output; a ValueError names missing, extra or wrong-shaped slots.

        Slots are matched by position in the variable list, so the model must be built from the same config.

        Args:
            slots: ``{"count", "m.{i:04d}", "v.{i:04d}"}`` numpy arrays, as written by ``slots()``.
        """
        expected = {"count"} | {f"{s}.{i:04d}" for i in range(len(self.params)) for s in "mv"}
        if set(slots) != expected:
            missing, extra = sorted(expected - set(slots)), sorted(set(slots) - expected)
            raise ValueError(
                f"optimizer slots do not match the model's {len(self.params)} trainable variables: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, extra {extra[:5]}"
            )
        self.count.assign(int(slots["count"]))
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            for var, arr, name in ((m, slots[f"m.{i:04d}"], "m"), (v, slots[f"v.{i:04d}"], "v")):
                if tuple(arr.shape) != tuple(var.shape):
                    raise ValueError(f"optimizer slot {name}.{i:04d} has shape {list(arr.shape)}, expected {var.shape.as_list()}")
                var.assign(arr)
