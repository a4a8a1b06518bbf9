"""RMSNorm: ``x * rsqrt(mean(x^2) + eps) * w``, computed in fp32 whatever the input dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def widen(x: jax.Array) -> jax.Array:
    """``x`` in fp32, or in its own dtype where that is wider: low-precision inputs are computed in fp32,
    and the equivalence suite's float64 oracle (``harness.interop.equivalence_f64``) stays float64."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """Normalise ``x`` of shape [..., D] by its root mean square over D, then scale by ``weight`` [D].

    The statistics run in fp32 because the mean of squares underflows/overflows in low precision.
    """
    x = widen(x)
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight


class RMSNorm(nnx.Module):
    """Thin layer over :func:`rms_norm`; the weight starts at ones so a fresh norm only normalises."""

    def __init__(self, dim: int, *, eps: float):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.weight[...], self.eps)
