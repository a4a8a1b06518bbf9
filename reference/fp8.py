"""FP8 (e4m3) block quantisation as DeepSeek-V3 uses it; ``reference.linear.Linear`` applies it.

Weights are quantised in 128x128 blocks and activations in 1x128 blocks along the input dim, each
block with one fp32 scale ``max(amax, 1e-4) / 448``. Values are clipped to +-448 *before* the cast:
an e4m3fn cast of an out-of-range value gives NaN, not 448. A matmul sums the e4m3 products of one
128-wide input block in fp32, scales that partial sum by both blocks' scales, and adds the blocks up.
Both divisions are IEEE divisions rounded once (see ``_divide``), so the e4m3 codes are exactly those
of ``harness.interop.fp8_oracle`` (numpy and ml_dtypes' round-to-nearest-even), ties included.

The master weights stay fp32; quantisation happens on the fly in every forward. Gradients use the
straight-through estimator: the rounding to the e4m3 grid counts as identity, the scales count as
constants, so ``d fp8_matmul / dx`` equals the fp32 matmul's gradient with dequantised operands.

Axis letters (the repository's one alphabet, docs/internals.md): O output features, I input features,
Y 128-wide quantisation blocks along I (``ceil(I/128)``), Z position inside such a block (0..127),
``...`` any leading axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 128
E4M3_MAX = 448.0
MIN_AMAX = 1e-4


def _pad_to_block(x: jax.Array, axis: int) -> jax.Array:
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
    """``x`` [..., I] -> (x / scale as blocks [..., Y, Z], scale [..., Y])."""
    y = -(-x.shape[-1] // BLOCK)
    blocks = _pad_to_block(x.astype(jnp.float32), -1).reshape(*x.shape[:-1], y, BLOCK)  # [..., Y, Z]
    scale = _block_scale(jnp.max(jnp.abs(blocks), axis=-1))  # [..., Y]
    return _divide(blocks, scale[..., None]), scale


def _weight_blocks(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``w`` [O, I] -> (w / scale as blocks [O/128, 128, Y, Z], scale [O/128, Y]) (O/128 rounded up)."""
    ob, y = -(-w.shape[0] // BLOCK), -(-w.shape[1] // BLOCK)
    padded = _pad_to_block(_pad_to_block(w.astype(jnp.float32), 0), 1)
    blocks = padded.reshape(ob, BLOCK, y, BLOCK)  # [O/128, 128, Y, Z]
    scale = _block_scale(jnp.max(jnp.abs(blocks), axis=(1, 3)))  # [O/128, Y]
    return _divide(blocks, scale[:, None, :, None]), scale


def quantize_act(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Quantise ``x`` [..., I] in 1x128 blocks: (q float8_e4m3fn [..., I], scale fp32 [..., Y])."""
    v, scale = _act_blocks(x)
    q = _to_e4m3(v).reshape(*x.shape[:-1], -1)[..., : x.shape[-1]]  # [..., I]
    return q, scale


def quantize_weight(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Quantise ``w`` [O, I] in 128x128 blocks: (q float8_e4m3fn [O, I], scale fp32 [ceil(O/128), Y])."""
    v, scale = _weight_blocks(w)
    ob, _, y, _ = v.shape
    q = _to_e4m3(v).reshape(ob * BLOCK, y * BLOCK)[: w.shape[0], : w.shape[1]]  # [O, I]
    return q, scale


def fake_quantize_weight(w: jax.Array) -> jax.Array:
    """``w`` [O, I] rounded through its fp8 blocks and back to fp32 (straight-through gradient).

    The absorbed attention path multiplies by ``wkv_b`` directly, as DeepSeek does with its
    ``weight_dequant``: the weight carries the fp8 error, the activation is not quantised.
    """
    v, scale = _weight_blocks(w)
    ob, _, y, _ = v.shape
    deq = _fake_e4m3(v) * scale[:, None, :, None]  # [O/128, 128, Y, Z]
    return deq.reshape(ob * BLOCK, y * BLOCK)[: w.shape[0], : w.shape[1]]  # [O, I]


def fp8_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w.T`` for ``x`` [..., I] and ``w`` [O, I] with both operands in fp8 blocks -> fp32 [..., O]."""
    o = w.shape[0]
    xv, sx = _act_blocks(x)  # [..., Y, Z], [..., Y]
    wv, sw = _weight_blocks(w)  # [O/128, 128, Y, Z], [O/128, Y]
    ob, _, y, _ = wv.shape
    wq = _fake_e4m3(wv).reshape(ob * BLOCK, y, BLOCK)[:o]  # [O, Y, Z]
    sw_rows = jnp.repeat(sw, BLOCK, axis=0)[:o]  # [O, Y]: each row takes its row-block's scales
    partial = jnp.einsum("...YZ,OYZ->...OY", _fake_e4m3(xv), wq)  # [..., O, Y]: fp32 sum per input block
    return jnp.sum(partial * sx[..., None, :] * sw_rows, axis=-1)  # [..., O]
