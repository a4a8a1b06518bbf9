"""Rotary position embedding on interleaved pairs, with DeepSeek-V3's YaRN frequency rule.

All tables are pure numpy functions of the config, computed in float64 and cast to float32 once,
so the oracle's angles are as exact as float32 storage allows (``t * freq`` in float32 would lose
~1e-4 rad at t ~ 1000). The only traced operation is :func:`apply_rope`.

Axis letters (the repository's one alphabet, docs/internals.md): B batch, T query length, N heads,
R rope dim, S positions 0..max_seq_len-1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from harness.config import ModelConfig, RopeScaling
from reference.norm import widen


def yarn_correction_range(rope_dim: int, theta: float, original_seq_len: int, beta_fast: float,
                          beta_slow: float) -> tuple[int, int]:
    """The (low, high) frequency indices between which YaRN blends interpolation and extrapolation.

    ``corr_dim(r) = d * ln(original_seq_len / (2 pi r)) / (2 ln theta)`` is the pair index whose
    wavelength fits ``r`` rotations into the original context. Pairs below ``low`` rotate fast enough
    to stay unscaled; pairs above ``high`` are fully interpolated. The 671B config gives (10, 23).

    Args:
        rope_dim: R, the rotated width; there are R/2 frequency pairs.
        theta: the RoPE base (10000 for DeepSeek-V3).
        original_seq_len: the context length the model was pretrained at.
        beta_fast: rotations over the original context above which a pair is left unscaled (32).
        beta_slow: rotations below which a pair is fully interpolated (1).

    Returns:
        ``(low, high)`` pair indices, clamped to [0, R - 1].
    """

    def corr_dim(rotations: float) -> float:
        return rope_dim * math.log(original_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = math.floor(corr_dim(beta_fast))
    high = math.ceil(corr_dim(beta_slow))
    return max(low, 0), min(high, rope_dim - 1)


def rope_freqs(cfg: ModelConfig) -> np.ndarray:
    """Per-pair angular frequencies of shape [R/2] (float64), rescaled when the context is extended.

    ``cfg.rope_scaling`` says how: YaRN (DeepSeek's ramp blend), PI (all divided by ``rope_factor``)
    or NONE (unchanged: plain extrapolation).
    """
    d = cfg.qk_rope_head_dim
    freqs = 1.0 / cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if cfg.max_seq_len <= cfg.original_seq_len or cfg.rope_scaling is RopeScaling.NONE:
        return freqs
    if cfg.rope_scaling is RopeScaling.PI:
        return freqs / cfg.rope_factor
    low, high = yarn_correction_range(d, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast, cfg.beta_slow)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    smooth = 1.0 - ramp  # 1 = keep the original frequency, 0 = divide it by the factor
    return freqs / cfg.rope_factor * (1.0 - smooth) + freqs * smooth


def rope_tables(cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(cos, sin)`` of ``angles[t] = t * freqs`` for t in 0..max_seq_len-1, each of shape [max_seq_len, R/2] float32."""
    angles = np.outer(np.arange(cfg.max_seq_len, dtype=np.float64), rope_freqs(cfg))  # [S, R/2]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rope_at(cfg: ModelConfig, start: int | jax.Array, t: int) -> tuple[jax.Array, jax.Array]:
    """``(cos, sin)``, each [T, R/2] fp32, for positions ``start .. start+T-1``.

    Args:
        cfg: the model config the tables are built from.
        start: the first position, a Python int or a traced scalar (a cache position under ``jax.jit``).
        t: T, the number of positions (static).

    Returns:
        the rows ``start..start+T-1`` of :func:`rope_tables`.
    """
    cos, sin = (jnp.asarray(table) for table in rope_tables(cfg))  # [S, R/2] each
    half = cos.shape[1]
    return (jax.lax.dynamic_slice(cos, (start, 0), (t, half)),
            jax.lax.dynamic_slice(sin, (start, 0), (t, half)))


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate interleaved pairs ``(x[2i], x[2i+1])`` by the angles of their positions.

    ``x`` has shape [B, T, R] (the shared key) or [B, T, N, R] (per-head queries); ``cos``/``sin``
    have shape [T, R/2]. The pair is the complex number ``x[2i] + 1j*x[2i+1]`` times ``exp(1j*angle)``.
    """
    if x.ndim == 4:
        cos, sin = cos[:, None, :], sin[:, None, :]  # [T, 1, R/2]: broadcast over heads
    pairs = widen(x).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)  # [..., R/2, 2]
    re, im = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([re * cos - im * sin, re * sin + im * cos], axis=-1)  # [..., R/2, 2]
    return rotated.reshape(x.shape)  # [..., R]
