"""RMSNorm: ``x * rsqrt(mean(x^2) + eps) * w``, computed in fp32 whatever the input dtype."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_impl.linear import Slot


def rms_norm(x: tf.Tensor, weight: tf.Tensor, eps: float) -> tf.Tensor:
    """Normalise ``x`` of shape [..., D] by its root mean square and scale by ``weight`` [D]."""
    x = tf.cast(x, tf.float32)
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), -1, keepdims=True) + eps) * weight


class RMSNorm(tf.Module):
    """RMSNorm with a learned per-feature scale, initialised to ones."""

    def __init__(self, dim: int, *, eps: float, name: str | None = None):
        super().__init__(name=name)
        self.eps = eps
        self.weight = tf.Variable(np.ones([dim], np.float32), name="weight")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def params(self, prefix: str) -> dict:
        """``{prefix + ".weight": Slot}``, the per-feature scale of shape [D]."""
        return {f"{prefix}.weight": Slot(self.weight)}
