"""FP8 (e4m3) block quantisation, as DeepSeek-V3 trains and serves its linear layers.

Weights are quantised in 128x128 blocks and activations in 1x128 blocks along the input dim, each
block with one fp32 scale ``max(amax, 1e-4) / 448``. Values are clipped to +-448 *before* the cast
(an e4m3fn cast of 500 gives NaN, not 448). ``fp8_matmul`` multiplies the e4m3 values, accumulates
each 128-wide input block in fp32, applies the two block scales to that partial sum and adds the blocks up.
The scale and ``x / scale`` are each rounded once, eagerly, as a graph and under XLA alike, so the e4m3
codes are exactly those of ``harness.interop.fp8_oracle`` (numpy and ml_dtypes' round-to-nearest-even).

Gradients: the rounding to e4m3 has zero derivative almost everywhere, so ``fp8_matmul`` uses the
straight-through estimator: the backward pass is that of the fp32 matmul ``x @ w.T`` with the
unquantised master weights (the master weights stay fp32; see docs/internals.md).

Axis letters (the repository's one alphabet, docs/internals.md): X rows (leading axes flattened),
U tiles of the sparse MoE, W rows in a tile, O output features, I input features, Y 128-wide
quantisation blocks along I (``ceil(I/128)``), Z position inside such a block (0..127).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.framework.dtypes import float8_e4m3fn

BLOCK = 128
E4M3_MAX = 448.0
MIN_AMAX = 1e-4


def _pad_to_block(x: tf.Tensor, axis: int) -> tf.Tensor:
    """Zero-pad ``axis`` of ``x`` up to a multiple of BLOCK (zeros quantise to zero)."""
    size = x.shape[axis]
    extra = -size % BLOCK
    if not extra:
        return x
    pads = [[0, 0]] * x.shape.rank
    pads[axis % x.shape.rank] = [0, extra]
    return tf.pad(x, pads)


def _block_scale(amax: tf.Tensor) -> tf.Tensor:
    """``max(amax, 1e-4) / 448`` rounded once to fp32.

    Grappler and XLA turn a division by the constant 448 into a multiplication by fp32(1/448), an ulp
    off for about half of all amax values, and an ulp in the scale moves quotients that sit on an e4m3
    rounding midpoint to the next code. Dividing in float64 and rounding to fp32 once gives the correctly
    rounded quotient even when the float64 division is rewritten the same way: its error (~2^-52) is far
    below the distance (>~2^-28 relative) between any fp32 quotient a/448 and an fp32 rounding midpoint.
    The scales are one value per block, so the float64 step costs nothing measurable.
    """
    return tf.cast(tf.cast(tf.maximum(amax, MIN_AMAX), tf.float64) / E4M3_MAX, tf.float32)


def _to_e4m3(x: tf.Tensor) -> tf.Tensor:
    """Cast fp32 values already divided by their scale to e4m3, clipping first so nothing becomes NaN."""
    return tf.cast(tf.clip_by_value(x, -E4M3_MAX, E4M3_MAX), float8_e4m3fn)


def quantize_weight(w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Quantise ``w`` of shape [..., O, I] in 128x128 blocks.

    Returns ``(q, scale)``: ``q`` e4m3 of shape [..., O, I] and ``scale`` fp32 of shape
    [..., ceil(O/128), ceil(I/128)], so that ``w ~= q * scale`` blockwise.
    """
    w = tf.convert_to_tensor(w, tf.float32)
    *lead, o, i = w.shape
    wp = _pad_to_block(_pad_to_block(w, -1), -2)                       # [..., O', I'], multiples of 128
    ob, y = wp.shape[-2] // BLOCK, wp.shape[-1] // BLOCK
    blocks = tf.reshape(wp, [*lead, ob, BLOCK, y, BLOCK])              # [..., O/128, 128, Y, Z]
    amax = tf.reduce_max(tf.abs(blocks), axis=[-3, -1])                # [..., O/128, Y]
    scale = _block_scale(amax)                                         # [..., O/128, Y]
    q = _to_e4m3(blocks / scale[..., :, None, :, None])                # [..., O/128, 128, Y, Z]
    q = tf.reshape(q, [*lead, ob * BLOCK, y * BLOCK])[..., :o, :i]     # [..., O, I]
    return q, scale


def dequantize_weight(q: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Inverse of ``quantize_weight``: fp32 of shape [..., O, I]."""
    *lead, o, i = q.shape
    rows = tf.repeat(scale, BLOCK, axis=-2)[..., :o, :]                # [..., O, Y]
    full = tf.repeat(rows, BLOCK, axis=-1)[..., :i]                    # [..., O, I]
    return tf.cast(q, tf.float32) * full


def quantize_act(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Quantise ``x`` of shape [..., I] in 1x128 blocks along the last dim.

    Returns ``(q, scale)``: ``q`` e4m3 of shape [..., I] and ``scale`` fp32 of shape [..., Y].
    """
    x = tf.convert_to_tensor(x, tf.float32)
    *lead, i = x.shape
    xp = _pad_to_block(x, -1)                                          # [..., I']
    y = xp.shape[-1] // BLOCK
    blocks = tf.reshape(xp, [*lead, y, BLOCK])                         # [..., Y, Z]
    scale = _block_scale(tf.reduce_max(tf.abs(blocks), -1))            # [..., Y]
    q = _to_e4m3(blocks / scale[..., None])                            # [..., Y, Z]
    return tf.reshape(q, [*lead, y * BLOCK])[..., :i], scale


def _blocked_product(x: tf.Tensor, w: tf.Tensor, grouped: bool) -> tf.Tensor:
    """The FP8 forward: e4m3 products summed in fp32 per input block, then scaled and summed over blocks."""
    o = w.shape[-2]
    xq, xs = quantize_act(x)                                           # [..., I], [..., Y]
    wq, ws = quantize_weight(w)                                        # [(U,) O, I], [(U,) O/128, Y]
    xb = _pad_to_block(tf.cast(xq, tf.float32), -1)
    wb = _pad_to_block(tf.cast(wq, tf.float32), -1)
    y = xb.shape[-1] // BLOCK
    xb = tf.reshape(xb, [*xb.shape[:-1], y, BLOCK])                    # [..., Y, Z]
    wb = tf.reshape(wb, [*wb.shape[:-1], y, BLOCK])                    # [(U,) O, Y, Z]
    ws_rows = tf.repeat(ws, BLOCK, axis=-2)[..., :o, :]                # [(U,) O, Y]
    if grouped:
        partial = tf.einsum("UWYZ,UOYZ->UWOY", xb, wb)                 # [U, W, O, Y] fp32 per block
        return tf.reduce_sum(partial * xs[:, :, None, :] * ws_rows[:, None], -1)  # [U, W, O]
    lead = xb.shape[:-2]
    xb = tf.reshape(xb, [-1, y, BLOCK])                                # [X, Y, Z]
    partial = tf.einsum("XYZ,OYZ->XOY", xb, wb)                        # [X, O, Y] fp32 per block
    out = tf.reduce_sum(partial * tf.reshape(xs, [-1, 1, y]) * ws_rows[None], -1)  # [X, O]
    return tf.reshape(out, [*lead, o])                                 # [..., O]


def fp8_matmul(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """``x @ w.T`` in FP8: ``x`` of shape [..., I], ``w`` [O, I] (fp32 master) -> fp32 [..., O].

    With a leading tile dim on both (``x`` [U, W, I], ``w`` [U, O, I]) it is the per-tile product
    [U, W, O] used by the sparse MoE. Backward: straight-through (the fp32 matmul's gradient).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    w = tf.convert_to_tensor(w, tf.float32)
    grouped = w.shape.rank == 3

    @tf.custom_gradient
    def _op(x, w):
        y = _blocked_product(x, w, grouped)

        def grad(dy):
            if grouped:
                return tf.einsum("UWO,UOI->UWI", dy, w), tf.einsum("UWO,UWI->UOI", dy, x)
            i, o = x.shape[-1], w.shape[-2]
            x2, dy2 = tf.reshape(x, [-1, i]), tf.reshape(dy, [-1, o])  # [X, I], [X, O]
            return tf.einsum("...O,OI->...I", dy, w), tf.einsum("XO,XI->OI", dy2, x2)

        return y, grad

    return _op(x, w)


def fake_quantize_weight(w: tf.Tensor) -> tf.Tensor:
    """``w`` rounded through e4m3 blocks and back to fp32, with a straight-through gradient.

    Used where a weight enters an einsum other than ``x @ w.T`` (the absorbed MLA folds ``wkv_b``
    into the query and the output), as DeepSeek dequantises ``wkv_b`` for that path.
    """
    w = tf.convert_to_tensor(w, tf.float32)
    return w + tf.stop_gradient(dequantize_weight(*quantize_weight(w)) - w)
