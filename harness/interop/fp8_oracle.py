"""The FP8 (e4m3) block quantisation written in numpy and ml_dtypes: the oracle both frameworks must match.

DeepSeek-V3 quantises a block by ``scale = max(amax, 1e-4) / 448`` and ``q = e4m3(clip(x / scale))``. Every
step here is one IEEE-754 fp32 operation rounded once (numpy's division is correctly rounded) and the cast is
ml_dtypes' round-to-nearest-even to ``float8_e4m3fn``. A framework that reaches the same formula by another
route can differ: XLA, for one, rewrites ``x / c`` and ``x / broadcast(d)`` as ``x * (1 / d)``, two roundings
whose result is up to an ulp off, and an ulp is enough to move a quotient that sits on an e4m3 rounding
midpoint to the other side (one e4m3 step, e.g. 0.25 between 2 and 4).

``tie_values`` builds inputs that hit exactly those midpoints, so a test can tell the correct rounding from
every near miss: quotients exactly halfway between adjacent e4m3 codes (ties go to the even code), one fp32
ulp either side of each midpoint (a double rounding through a narrower type such as bfloat16 or float16 turns
these into ties), in the subnormal range and the normal range, both signs, and the saturation edge at 448.

Axis letters (the fp8 modules' own legend): O output features, I input features, c position in a 128 block.
"""

from __future__ import annotations

from typing import Callable

import ml_dtypes
import numpy as np
from numpy.typing import ArrayLike

BLOCK = 128
E4M3_MAX = np.float32(448.0)
MIN_AMAX = np.float32(1e-4)
E4M3 = ml_dtypes.float8_e4m3fn


def block_scale(amax: np.ndarray) -> np.ndarray:
    """``max(amax, 1e-4) / 448`` in fp32, one correctly rounded division per block."""
    return (np.maximum(np.asarray(amax, np.float32), MIN_AMAX) / E4M3_MAX).astype(np.float32)


def to_e4m3(v: np.ndarray) -> np.ndarray:
    """Clip fp32 values to +-448, then round to nearest even in e4m3 (an out-of-range cast gives NaN)."""
    return np.clip(np.asarray(v, np.float32), -E4M3_MAX, E4M3_MAX).astype(E4M3)


def _pad(x: np.ndarray, axis: int) -> np.ndarray:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, -x.shape[axis] % BLOCK)
    return np.pad(x, widths)


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w`` fp32 [O, I] -> (e4m3 [O, I], fp32 scales [ceil(O/128), ceil(I/128)]), 128x128 blocks."""
    w = np.asarray(w, np.float32)
    o, i = w.shape
    padded = _pad(_pad(w, 0), 1)
    ob, ib = padded.shape[0] // BLOCK, padded.shape[1] // BLOCK
    blocks = padded.reshape(ob, BLOCK, ib, BLOCK)                       # [Ob, 128, Ib, 128]
    scale = block_scale(np.abs(blocks).max(axis=(1, 3)))               # [Ob, Ib]
    q = to_e4m3(blocks / scale[:, None, :, None])                      # [Ob, 128, Ib, 128]
    return q.reshape(ob * BLOCK, ib * BLOCK)[:o, :i], scale


def quantize_act(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` fp32 [..., I] -> (e4m3 [..., I], fp32 scales [..., ceil(I/128)]), 1x128 blocks on the last dim."""
    x = np.asarray(x, np.float32)
    padded = _pad(x, -1)
    kb = padded.shape[-1] // BLOCK
    blocks = padded.reshape(*x.shape[:-1], kb, BLOCK)                  # [..., K, 128]
    scale = block_scale(np.abs(blocks).max(axis=-1))                   # [..., K]
    q = to_e4m3(blocks / scale[..., None])                             # [..., K, 128]
    return q.reshape(*x.shape[:-1], kb * BLOCK)[..., : x.shape[-1]], scale


def code_mismatch(got: np.ndarray, want: np.ndarray, inputs: np.ndarray) -> str:
    """'' when two e4m3 arrays hold the same 8-bit codes (so -0 and +0 count as different), else how many
    codes differ and the first: its input and both values.

    Args:
        got: the e4m3 array under test (a framework's quantised values).
        want: the oracle's e4m3 array of the same shape.
        inputs: the values both were quantised from, the same shape; the message quotes the first mismatch's.

    Returns:
        '' on a match; otherwise a one-line message (a shape mismatch, or the count and the first differing code).
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    bad = np.flatnonzero(got.view(np.uint8).ravel() != want.view(np.uint8).ravel())
    if not bad.size:
        return ""
    i = bad[0]
    return (f"{bad.size} codes differ from ml_dtypes, e.g. input {np.asarray(inputs).ravel()[i]!r} -> "
            f"{got.ravel()[i].astype(np.float32)} instead of {want.ravel()[i].astype(np.float32)}")


def quantiser_mismatch(quantize: Callable[[np.ndarray], tuple[ArrayLike, ArrayLike]], x: np.ndarray,
                       kind: str) -> str:
    """'' when ``quantize(x)`` (a framework's ``quantize_weight`` for ``kind="weight"``, ``quantize_act`` for
    ``"act"``; any array-like results) gives the oracle's scales and e4m3 codes, else what differs.

    Args:
        quantize: the framework's quantiser under test, returning ``(e4m3 values, fp32 scales)``.
        x: the fp32 input, [O, I] for a weight, [..., I] for activations.
        kind: ``"weight"`` (128x128 blocks, checked against ``quantize_weight``) or ``"act"`` (1x128 blocks,
            against ``quantize_act``).

    Returns:
        '' when scales and codes match bit for bit; otherwise which of the two differs, and how.
    """
    q, s = (np.asarray(v) for v in quantize(x))
    q_ref, s_ref = (quantize_weight if kind == "weight" else quantize_act)(x)
    if s.shape != s_ref.shape or not np.array_equal(s, s_ref):
        n = "shape" if s.shape != s_ref.shape else int((s != s_ref).sum())
        return f"block scales differ from max(amax, 1e-4)/448 rounded once ({n})"
    return code_mismatch(q, q_ref, x)


def tie_mismatch(kind: str, quantize: Callable[[np.ndarray], tuple[ArrayLike, ArrayLike]]) -> str:
    """:func:`quantiser_mismatch` of a framework's ``quantize_weight`` (``kind="weight"``, on :func:`tie_weight`)
    or ``quantize_act`` (``"act"``, on :func:`tie_activations`): '' when every tie case rounds as ml_dtypes.

    Args:
        kind: ``"weight"`` or ``"act"``: which quantiser ``quantize`` is and which tie input it gets.
        quantize: the framework's quantiser under test, returning ``(e4m3 values, fp32 scales)``.

    Returns:
        '' when every tie rounds as the oracle's; otherwise the ``quantiser_mismatch`` message.
    """
    return quantiser_mismatch(quantize, tie_weight() if kind == "weight" else tie_activations(), kind)


def e4m3_midpoints() -> np.ndarray:
    """The 126 positive fp32 values exactly halfway between adjacent non-negative finite e4m3 values
    (from 2^-10, between 0 and the smallest subnormal, up to 432, between 416 and 448)."""
    codes = np.arange(256, dtype=np.uint8).view(E4M3).astype(np.float32)
    grid = np.unique(codes[np.isfinite(codes) & (codes >= 0)])         # 0, 7 subnormals, ..., 448
    return ((grid[:-1].astype(np.float64) + grid[1:]) / 2).astype(np.float32)  # exact: 5 significant bits


def tie_quotients() -> np.ndarray:
    """Every midpoint and its two fp32 neighbours, both signs, plus the saturation edge (448 and the ulp
    below it). These are the values ``x / scale`` must produce for the e4m3 cast to be probed at its ties."""
    mids = e4m3_midpoints()
    near = np.concatenate([mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf)),
                           [E4M3_MAX, np.nextafter(E4M3_MAX, np.float32(0))]]).astype(np.float32)
    return np.concatenate([near, -near])


def tie_values(amax: float, quotients: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """fp32 inputs ``x`` (with ``amax`` itself first) whose correctly rounded quotient ``x / block_scale(amax)``
    is exactly each of ``quotients`` (default :func:`tie_quotients`).

    A quotient that no fp32 ``x`` produces for this scale is left out; pick ``amax`` so that the scale's
    significand is just above 1 (e.g. ``448 * 1.01 * 2**-8``) and every quotient is reachable.

    Args:
        amax: the block's largest magnitude, which sets the scale ``max(amax, 1e-4) / 448``.
        quotients: the fp32 quotients to hit; None means :func:`tie_quotients`.

    Returns:
        ``(x, hit)``, fp32 arrays of equal length: the inputs, and the quotient each one hits (``amax``
        first, whose quotient is 448 up to an ulp).
    """
    quotients = tie_quotients() if quotients is None else np.asarray(quotients, np.float32)
    amax = np.float32(amax)
    scale = block_scale(amax)
    xs, hits = [amax], [np.float32(amax / scale)]
    for t in quotients:
        guess = np.float32(np.float64(t) * np.float64(scale))
        for k in (0, -1, 1, -2, 2, -3, 3):
            x = guess
            for _ in range(abs(k)):
                x = np.nextafter(x, np.float32(np.sign(k) * np.inf))
            if abs(x) <= amax and np.float32(x / scale) == t:
                xs.append(x)
                hits.append(t)
                break
    return np.array(xs, np.float32), np.array(hits, np.float32)


def tie_weight(amaxes: tuple[float, ...] = (448 * 1.01 * 2.0**-8, 448 * 1.02 * 2.0**-3, 0.5e-4)) -> np.ndarray:
    """A weight [128, 128 * len(amaxes)]: one 128x128 block per ``amax``, each holding :func:`tie_values`
    (the rest zeros, which quantise to zero). The defaults cover a small and a large scale whose division
    differs from multiplying by the reciprocal, and a block under the 1e-4 scale floor."""
    w = np.zeros((BLOCK, BLOCK * len(amaxes)), np.float32)
    for b, amax in enumerate(amaxes):
        x, _ = tie_values(amax)
        block = np.zeros(BLOCK * BLOCK, np.float32)
        block[: x.size] = x
        w[:, b * BLOCK:(b + 1) * BLOCK] = block.reshape(BLOCK, BLOCK)  # [128, 128]
    return w


def tie_activations(amaxes: tuple[float, ...] = (448 * 1.01 * 2.0**-8, 448 * 1.02 * 2.0**-3, 0.5e-4)) -> np.ndarray:
    """Activations [rows, 128]: each row one 1x128 block holding ``amax`` and up to 127 of its tie values."""
    rows = []
    for amax in amaxes:
        x, _ = tie_values(amax)
        for start in range(1, x.size, BLOCK - 1):
            row = np.zeros(BLOCK, np.float32)
            chunk = x[start:start + BLOCK - 1]
            row[0], row[1:1 + chunk.size] = x[0], chunk               # the block's amax stays x[0]
            rows.append(row)
    return np.stack(rows)
