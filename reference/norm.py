"""RMSNorm: ``x * rsqrt(mean(x^2) + eps) * w``, computed in fp32 whatever the input dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """Normalise ``x`` of shape [..., D] by its root mean square over D, then scale by ``weight`` [D].

    The statistics run in fp32 because the mean of squares underflows/overflows in low precision.
    """
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight


class RMSNorm(nnx.Module):
    """Thin layer over :func:`rms_norm`; the weight starts at ones so a fresh norm only normalises."""

    def __init__(self, dim: int, *, eps: float):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.weight[...], self.eps)
