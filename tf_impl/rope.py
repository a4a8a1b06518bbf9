"""Rotary position embedding on interleaved pairs, with DeepSeek-V3's YaRN frequency rule.

Pairs are (x[0], x[1]), (x[2], x[3]), ...; pair i is the complex number ``x[2i] + 1j*x[2i+1]``, turned
by ``exp(1j * t * freqs[i])`` at position t. The tables are pure numpy functions of the config; the
softmax side of YaRN (mscale**2) lives in ``cfg.softmax_scale``. Beyond ``original_seq_len``,
``cfg.rope_scaling`` picks YaRN (DeepSeek's rule, the default), position interpolation or plain RoPE.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, N heads,
R rope dim, S positions 0..max_seq_len-1.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from harness.config import ModelConfig, RopeScaling


def yarn_correction_range(rope_dim: int, theta: float, original_seq_len: int, beta_fast: float,
                          beta_slow: float) -> tuple[int, int]:
    """The rotary-pair range ``(low, high)`` over which YaRN ramps from extrapolation to interpolation.

    ``corr_dim(r) = R * ln(original_seq_len / (2*pi*r)) / (2 ln theta)``; ``low = floor(corr_dim(beta_fast))``,
    ``high = ceil(corr_dim(beta_slow))``, clamped to [0, R - 1]. The 671B config gives (10, 23).
    """

    def corr_dim(rotations: float) -> float:
        return rope_dim * math.log(original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = math.floor(corr_dim(beta_fast))
    high = math.ceil(corr_dim(beta_slow))
    return max(low, 0), min(high, rope_dim - 1)


def rope_freqs(cfg: ModelConfig) -> np.ndarray:
    """Per-pair angular frequencies of shape [R/2] (float64), rescaled when ``cfg.rope_extended``.

    YaRN blends each frequency between kept and divided by ``rope_factor`` along its ramp; position
    interpolation (``RopeScaling.PI``) divides all of them; ``RopeScaling.NONE`` keeps them.
    Kept in float64 until the cos/sin tables are built: a float32 angle ``t * f`` is off by up to
    ulp(t)/2, which at t = 16k is already 1e-3 rad, far above the float32 equivalence tolerance.
    """
    dim = cfg.qk_rope_head_dim
    freqs = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    if not cfg.rope_extended:
        return freqs
    if cfg.rope_scaling is RopeScaling.PI:
        return freqs / cfg.rope_factor
    low, high = yarn_correction_range(dim, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast, cfg.beta_slow)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    smooth = 1.0 - ramp
    return freqs / cfg.rope_factor * (1.0 - smooth) + freqs * smooth


def rope_angles(cfg: ModelConfig) -> np.ndarray:
    """Angles ``t * freqs`` of shape [max_seq_len, R/2] for positions 0..max_seq_len-1 (float64)."""
    t = np.arange(cfg.max_seq_len, dtype=np.float64)
    return np.outer(t, rope_freqs(cfg))  # [S, R/2]


def rope_tables(cfg: ModelConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """``(cos, sin)`` tables, each fp32 of shape [max_seq_len, R/2]."""
    angles = rope_angles(cfg)  # [S, R/2] float64; cast once, after cos/sin
    return tf.constant(np.cos(angles), tf.float32), tf.constant(np.sin(angles), tf.float32)


def apply_rope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
    """Rotate interleaved pairs of ``x`` [..., R] by angles whose cos/sin broadcast to [..., R/2].

    Pairs are (x[2i], x[2i+1]) as in DeepSeek-V3's complex-number rotation, not the half-split
    layout of some other implementations; the canonical weights assume this pairing.

    Args:
        x: queries or keys, e.g. of shape [B, T, N, R] or [B, T, R]; the last axis is rotated.
        cos: cosines of the angles, e.g. [T, R/2] broadcast against x's middle axes by the caller.
        sin: sines of the same angles, shaped like ``cos``.

    Returns:
        the rotated tensor, of the same shape as ``x``.
    """
    pairs = tf.reshape(x, [*x.shape[:-1], x.shape[-1] // 2, 2])        # [..., R/2, 2]
    re, im = pairs[..., 0], pairs[..., 1]                               # [..., R/2] each
    out = tf.stack([re * cos - im * sin, re * sin + im * cos], -1)      # [..., R/2, 2]
    return tf.reshape(out, x.shape)                                     # [..., R]
