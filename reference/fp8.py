"""FP8 (e4m3) block quantisation as DeepSeek-V3 uses it, and the Linear layer that applies it.

Weights are quantised in 128x128 blocks and activations in 1x128 blocks along the input dim, each
block with one fp32 scale ``max(amax, 1e-4) / 448``. Values are clipped to +-448 *before* the cast:
an e4m3fn cast of an out-of-range value gives NaN, not 448. A matmul sums the e4m3 products of one
128-wide K block in fp32, scales that partial sum by both blocks' scales, and adds the blocks up.
Both divisions are IEEE divisions rounded once (see ``_divide``), so the e4m3 codes are exactly those
of ``harness.fp8_oracle`` (numpy and ml_dtypes' round-to-nearest-even), ties included.

The master weights stay fp32; quantisation happens on the fly in every forward. Gradients use the
straight-through estimator: the rounding to the e4m3 grid counts as identity, the scales count as
constants, so ``d fp8_matmul / dx`` equals the fp32 matmul's gradient with dequantised operands.

Axis letters (own legend, blocks are not in the model alphabet): n output features, k K-block,
c column inside a 128-wide block, ``...`` any leading batch axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BLOCK = 128
E4M3_MAX = 448.0
MIN_AMAX = 1e-4


def _pad_last(x: jax.Array, axis: int) -> jax.Array:
    """Zero-pad ``axis`` up to a multiple of BLOCK (zeros never change a block's amax)."""
    pad = -x.shape[axis] % BLOCK
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def _divide(x: jax.Array, d: jax.Array) -> jax.Array:
    """``x / d`` (``d`` broadcast to ``x``) rounded once, as IEEE-754 division and numpy round it.

    XLA rewrites a division by a constant or by a broadcast operand into a multiplication by the
    reciprocal: two roundings, up to an ulp off the true quotient, and an ulp moves a quotient that sits
    on an e4m3 rounding midpoint to the next e4m3 code (that was the TF-vs-Flax difference of one e4m3
    step at the bench config). The optimization barrier hides the divisor from the rewrite, at the cost
    of materialising the broadcast divisor.
    """
    return x / jax.lax.optimization_barrier(jnp.broadcast_to(d, x.shape))


def _block_scale(amax: jax.Array) -> jax.Array:
    """The fp32 scale that maps a block's largest magnitude onto e4m3's largest finite value."""
    return jax.lax.stop_gradient(_divide(jnp.maximum(amax, MIN_AMAX), jnp.float32(E4M3_MAX)))


def _to_e4m3(v: jax.Array) -> jax.Array:
    """Clip to the e4m3 range, then cast (the clip must come first: 500 would cast to NaN)."""
    return jnp.clip(v, -E4M3_MAX, E4M3_MAX).astype(jnp.float8_e4m3fn)


def _fake_e4m3(v: jax.Array) -> jax.Array:
    """fp32 values rounded to the e4m3 grid; straight-through (identity) gradient."""
    return v + jax.lax.stop_gradient(_to_e4m3(v).astype(jnp.float32) - v)


def _act_blocks(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x`` [..., K] -> (x / scale as blocks [..., KB, 128], scale [..., KB])."""
    kb = -(-x.shape[-1] // BLOCK)
    blocks = _pad_last(x.astype(jnp.float32), -1).reshape(*x.shape[:-1], kb, BLOCK)  # (..., KB, 128)
    scale = _block_scale(jnp.max(jnp.abs(blocks), axis=-1))  # (..., KB)
    return _divide(blocks, scale[..., None]), scale


def _weight_blocks(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``w`` [N, K] -> (w / scale as blocks [NB, 128, KB, 128], scale [NB, KB])."""
    nb, kb = -(-w.shape[0] // BLOCK), -(-w.shape[1] // BLOCK)
    padded = _pad_last(_pad_last(w.astype(jnp.float32), 0), 1)
    blocks = padded.reshape(nb, BLOCK, kb, BLOCK)  # (NB, 128, KB, 128)
    scale = _block_scale(jnp.max(jnp.abs(blocks), axis=(1, 3)))  # (NB, KB)
    return _divide(blocks, scale[:, None, :, None]), scale


def quantize_act(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Quantise ``x`` [..., K] in 1x128 blocks: (q float8_e4m3fn [..., K], scale fp32 [..., ceil(K/128)])."""
    v, scale = _act_blocks(x)
    q = _to_e4m3(v).reshape(*x.shape[:-1], -1)[..., : x.shape[-1]]  # (..., K)
    return q, scale


def quantize_weight(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Quantise ``w`` [out, in] in 128x128 blocks: (q float8_e4m3fn [out, in], scale fp32 [ceil(out/128), ceil(in/128)])."""
    v, scale = _weight_blocks(w)
    nb, _, kb, _ = v.shape
    q = _to_e4m3(v).reshape(nb * BLOCK, kb * BLOCK)[: w.shape[0], : w.shape[1]]  # (out, in)
    return q, scale


def dequantize_weight(w: jax.Array) -> jax.Array:
    """``w`` [out, in] rounded through its fp8 blocks and back to fp32 (straight-through gradient).

    The absorbed attention path multiplies by ``wkv_b`` directly, as DeepSeek does with its
    ``weight_dequant``: the weight carries the fp8 error, the activation is not quantised.
    """
    v, scale = _weight_blocks(w)
    nb, _, kb, _ = v.shape
    deq = _fake_e4m3(v) * scale[:, None, :, None]  # (NB, 128, KB, 128)
    return deq.reshape(nb * BLOCK, kb * BLOCK)[: w.shape[0], : w.shape[1]]  # (out, in)


def fp8_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w.T`` for ``x`` [..., K] and ``w`` [N, K] with both operands in fp8 blocks -> fp32 [..., N]."""
    n = w.shape[0]
    xv, sx = _act_blocks(x)  # (..., KB, 128), (..., KB)
    wv, sw = _weight_blocks(w)  # (NB, 128, KB, 128), (NB, KB)
    nb, _, kb, _ = wv.shape
    wq = _fake_e4m3(wv).reshape(nb * BLOCK, kb, BLOCK)[:n]  # (N, KB, 128)
    sw_rows = jnp.repeat(sw, BLOCK, axis=0)[:n]  # (N, KB): each row takes its row-block's scales
    partial = jnp.einsum("...kc,nkc->...nk", _fake_e4m3(xv), wq)  # (..., N, KB): fp32 sum per K block
    return jnp.sum(partial * sx[..., None, :] * sw_rows, axis=-1)  # (..., N)


def linear(x: jax.Array, w: jax.Array, fp8: bool) -> jax.Array:
    """``x @ w.T`` for ``w`` [out, in]: an fp32 matmul, or :func:`fp8_matmul` when ``fp8``."""
    if fp8:
        return fp8_matmul(x, w)
    return jnp.einsum("...i,oi->...o", x.astype(jnp.float32), w)


def normal_param(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> nnx.Param:
    """An fp32 parameter drawn from N(0, std^2).

    Initial values come from numpy's generator: drawing them with ``jax.random`` compiles a
    random-number kernel per shape (5-15 s for the tiny model on CPU, eager or jitted), and the
    values only need to be deterministic per seed, not reproducible by the TF side (it loads them).

    Args:
        rng: the seeded numpy generator; consumed in call order, so init order fixes the values.
        shape: the parameter's shape, e.g. [out, in] for a Linear weight.
        std: the standard deviation of the normal draw.

    Returns:
        an ``nnx.Param`` holding an fp32 array of shape ``shape``.
    """
    return nnx.Param(jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(std)))


class Linear(nnx.Module):
    """A bias-free linear layer whose weight is stored [out, in], the canonical layout.

    Weights start as N(0, 1/in) so activations keep unit scale at any width, which keeps the
    gate's scores well separated (near-ties make routing fragile across frameworks).
    """

    def __init__(self, in_dim: int, out_dim: int, *, fp8: bool = False, rng: np.random.Generator):
        self.fp8 = fp8
        self.weight = normal_param(rng, (out_dim, in_dim), in_dim**-0.5)

    def __call__(self, x: jax.Array) -> jax.Array:
        return linear(x, self.weight[...], self.fp8)

    def effective_weight(self) -> jax.Array:
        """The weight as the matmul sees it: fp32, or rounded through fp8 blocks in FP8 mode."""
        w = self.weight[...]
        return dequantize_weight(w) if self.fp8 else w
