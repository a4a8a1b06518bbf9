"""Linear layer (fp32 or FP8) and the seeded weight initialisers shared by every module.

Weights are stored [I, O] (in, out), the transpose of the canonical state's [O, I], and ``y = x @ W``.
The reason is speed on XLA:CPU: ``x @ W.T`` with W stored [O, I] runs about 2x slower than ``x @ W``
with W stored [I, O] when x has 2..64 rows (decode batches, speculative verification), and the same at
1 row and at thousands. The stored layout is a :class:`Kernel`; :func:`canonical_swap` converts
between it and the canonical layout, the one rule every state conversion uses. MLA's ``wkv_b`` is
the exception, kept [O, I] (``Linear(..., kernel_layout=False)``): the absorbed decode path reads it
per head as [N, H+H, C].

In FP8 mode the product is ``reference.fp8.fp8_matmul`` (both operands quantised on the fly, the fp32
weight is the master copy). FP8 blocks are defined on the canonical [O, I] weight, so the FP8 path
hands ``fp8_matmul`` that view (a transpose XLA folds into the quantisation's reshapes).

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


class Kernel(nnx.Param):
    """A trained linear weight stored [..., I, O]: the transpose of its canonical [..., O, I] tensor(s)."""


def canonical_swap(var: nnx.Variable, value: np.ndarray) -> np.ndarray:
    """``value`` of ``var`` moved between stored and canonical layout (the same swap both ways).

    A :class:`Kernel` swaps its last two axes ([..., I, O] <-> [..., O, I]); any other variable (norms,
    the embedding, the gate's weight and bias) is stored as the canonical state holds it.
    """
    return np.swapaxes(value, -1, -2) if isinstance(var, Kernel) else value


def _draw(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """fp32 values from N(0, 1/fan_in), drawn from ``rng`` in C order of ``shape``."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(fan_in**-0.5)


def init_weight(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> nnx.Param:
    """An fp32 parameter drawn from N(0, 1/fan_in): activations keep unit scale at any width.

    Initial values come from numpy's generator: drawing them with ``jax.random`` compiles a
    random-number kernel per shape (5-15 s for the tiny model on CPU, eager or jitted), and the
    values only need to be deterministic per seed, not reproducible by the TF side (it loads them).

    Args:
        rng: the seeded numpy generator shared by the whole model; consumed in call order, so init
            order fixes the values.
        shape: the parameter's shape, e.g. [E, D] for the gate or [V, D] for the embedding.
        fan_in: the input width the std ``fan_in**-0.5`` is computed from (1 for the embedding).

    Returns:
        an ``nnx.Param`` holding an fp32 array of shape ``shape``.
    """
    return nnx.Param(jnp.asarray(_draw(rng, shape, fan_in)))


def init_kernel(rng: np.random.Generator, canonical_shape: tuple[int, ...], fan_in: int) -> Kernel:
    """A linear weight as :func:`init_weight` draws it in its canonical shape [..., O, I], stored [..., I, O].

    Drawing in the canonical shape keeps a seed's canonical state independent of the stored layout.

    Args:
        rng: the model's seeded numpy generator (see :func:`init_weight`).
        canonical_shape: [O, I], or [E, O, I] for stacked experts.
        fan_in: I, the input width.

    Returns:
        a :class:`Kernel` holding an fp32 array of shape [..., I, O].
    """
    return Kernel(jnp.asarray(np.swapaxes(_draw(rng, canonical_shape, fan_in), -1, -2)))


def linear(x: jax.Array, w: jax.Array, fp8: bool) -> jax.Array:
    """``x @ w`` for ``x`` [..., I] and ``w`` [I, O]: an fp32 matmul, or :func:`fp8_matmul` when ``fp8``.

    Narrower activations (bf16) are widened to fp32, never wider ones narrowed: the float64 oracle of
    the equivalence suite (``harness.interop.equivalence_f64``) runs this same code in float64."""
    if fp8:
        return fp8_matmul(x, w.T)  # blocks of the canonical [O, I] view
    return jnp.einsum("...I,IO->...O", widen(x), w)  # [..., O]


class Linear(nnx.Module):
    """A bias-free linear layer whose weight is a :class:`Kernel` stored [I, O] (canonical [O, I] transposed).

    Weights start as N(0, 1/I) so activations keep unit scale at any width, which keeps the
    gate's scores well separated (near-ties make routing fragile across frameworks).
    ``kernel_layout=False`` keeps the canonical [O, I] as a plain ``nnx.Param`` (MLA's ``wkv_b``, as in TF).
    """

    def __init__(self, in_dim: int, out_dim: int, *, fp8: bool = False, rng: np.random.Generator,
                 kernel_layout: bool = True):
        self.fp8, self.kernel_layout = fp8, kernel_layout
        if kernel_layout:
            self.weight = init_kernel(rng, (out_dim, in_dim), in_dim)  # [I, O]
        else:  # a plain Param in the canonical [O, I]: for a weight mostly read per head as [N, H, I] (MLA's wkv_b)
            self.weight = init_weight(rng, (out_dim, in_dim), in_dim)  # [O, I]

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kernel_layout:
            return linear(x, self.weight[...], self.fp8)
        w = self.weight[...]                                           # [O, I]
        return fp8_matmul(x, w) if self.fp8 else jnp.einsum("...I,OI->...O", widen(x), w)  # [..., O]

    def effective_weight(self) -> jax.Array:
        """The stored weight ([I, O], or [O, I] without ``kernel_layout``) as the matmul sees it: fp32, or
        rounded through fp8 blocks in FP8 mode.

        The fp8 blocks are those of the canonical [O, I] view, so the FP8 case of a kernel transposes
        there and back.
        """
        w = self.weight[...]
        if not self.fp8:
            return w
        return fake_quantize_weight(w.T).T if self.kernel_layout else fake_quantize_weight(w)
