"""Linear layer (fp32 or FP8) and the seeded weight initialiser shared by every module.

Weights are stored [O, I] as in the canonical state, and ``y = x @ W.T``. In FP8 mode the product is
``reference.fp8.fp8_matmul`` (both operands quantised on the fly, the fp32 weight is the master copy).

Axis letters (the repository's one alphabet, docs/internals.md): O output features, I input features,
``...`` any leading axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from reference.fp8 import fake_quantize_weight, fp8_matmul
from reference.norm import widen


def init_weight(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> nnx.Param:
    """An fp32 parameter drawn from N(0, 1/fan_in): activations keep unit scale at any width.

    Initial values come from numpy's generator: drawing them with ``jax.random`` compiles a
    random-number kernel per shape (5-15 s for the tiny model on CPU, eager or jitted), and the
    values only need to be deterministic per seed, not reproducible by the TF side (it loads them).

    Args:
        rng: the seeded numpy generator shared by the whole model; consumed in call order, so init
            order fixes the values.
        shape: the parameter's shape, e.g. [O, I], or [E, F, D] for stacked experts.
        fan_in: the input width the std ``fan_in**-0.5`` is computed from (1 for the embedding).

    Returns:
        an ``nnx.Param`` holding an fp32 array of shape ``shape``.
    """
    return nnx.Param(jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(fan_in**-0.5)))


def linear(x: jax.Array, w: jax.Array, fp8: bool) -> jax.Array:
    """``x @ w.T`` for ``x`` [..., I] and ``w`` [O, I]: an fp32 matmul, or :func:`fp8_matmul` when ``fp8``.

    Narrower activations (bf16) are widened to fp32, never wider ones narrowed: the float64 oracle of
    the equivalence suite (``harness.interop.equivalence_f64``) runs this same code in float64."""
    if fp8:
        return fp8_matmul(x, w)
    return jnp.einsum("...I,OI->...O", widen(x), w)  # [..., O]


class Linear(nnx.Module):
    """A bias-free linear layer whose weight is stored [O, I], the canonical layout.

    Weights start as N(0, 1/I) so activations keep unit scale at any width, which keeps the
    gate's scores well separated (near-ties make routing fragile across frameworks).
    """

    def __init__(self, in_dim: int, out_dim: int, *, fp8: bool = False, rng: np.random.Generator):
        self.fp8 = fp8
        self.weight = init_weight(rng, (out_dim, in_dim), in_dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return linear(x, self.weight[...], self.fp8)

    def effective_weight(self) -> jax.Array:
        """The weight [O, I] as the matmul sees it: fp32, or rounded through fp8 blocks in FP8 mode."""
        w = self.weight[...]
        return fake_quantize_weight(w) if self.fp8 else w
