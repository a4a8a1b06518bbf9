import math

import jax.numpy as jnp
import numpy as np
import pytest

from harness.config import ModelConfig
from reference.rope import apply_rope, rope_freqs, rope_tables, yarn_correction_range


def test_yarn_correction_range_671b():
    cfg = ModelConfig.v3_671b()
    assert yarn_correction_range(cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast,
                                 cfg.beta_slow) == (10, 23)


def test_yarn_correction_range_is_clamped():
    # d=8, theta=100, L=16: corr_dim(32) = -2.2 -> floor -3 -> clamped to 0; corr_dim(1) = 0.81 -> 1.
    assert yarn_correction_range(8, 100.0, 16, 32, 1) == (0, 1)
    # d=8, theta=10, L=1e6: corr_dim(1) = 20.8 -> ceil 21 -> clamped to d-1 = 7.
    assert yarn_correction_range(8, 10.0, 10**6, 32, 1)[1] == 7


def test_freqs_without_yarn_are_plain_rope():
    cfg = ModelConfig.tiny(max_seq_len=64, original_seq_len=64)  # not extended: no YaRN
    expected = [1.0, 10000 ** (-2 / 8), 10000 ** (-4 / 8), 10000 ** (-6 / 8)]
    np.testing.assert_allclose(rope_freqs(cfg), expected, rtol=1e-12)


def test_freqs_with_yarn_hand_computed():
    # d=8, theta=100, L=16, factor=4, beta 2/1: corr_dim(r) = 8 ln(16/(2 pi r)) / (2 ln 100)
    cfg = ModelConfig.tiny(qk_rope_head_dim=8, rope_theta=100.0, original_seq_len=16, max_seq_len=64,
                           rope_factor=4.0, beta_fast=2, beta_slow=1)
    c_fast = 8 * math.log(16 / (2 * math.pi * 2)) / (2 * math.log(100))  # 0.0541 -> floor 0
    c_slow = 8 * math.log(16 / (2 * math.pi * 1)) / (2 * math.log(100))  # 0.8067 -> ceil 1
    assert (math.floor(c_fast), math.ceil(c_slow)) == (0, 1)
    base = [100 ** (-i / 8) for i in (0, 2, 4, 6)]
    # ramp = clamp((i - 0) / (1 - 0)) = [0, 1, 1, 1]: pair 0 keeps its frequency, the rest are divided by 4.
    expected = [base[0], base[1] / 4, base[2] / 4, base[3] / 4]
    np.testing.assert_allclose(rope_freqs(cfg), expected, rtol=1e-12)


def test_rope_tables_are_angles_times_positions():
    cfg = ModelConfig.tiny()
    cos, sin = rope_tables(cfg)
    angles = np.arange(cfg.max_seq_len)[:, None] * rope_freqs(cfg)[None, :]
    assert cos.shape == (cfg.max_seq_len, cfg.qk_rope_head_dim // 2) and cos.dtype == np.float32
    np.testing.assert_allclose(cos, np.cos(angles), atol=1e-7)
    np.testing.assert_allclose(sin, np.sin(angles), atol=1e-7)


@pytest.mark.parametrize("heads", [False, True])
def test_apply_rope_rotates_interleaved_pairs(heads):
    # x = [1, 2, 3, 4]: pairs (1,2) and (3,4); angles a0, a1 for the single position.
    a = np.array([[0.3, -1.1]], np.float32)
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape((1, 1, 1, 4) if heads else (1, 1, 4))
    out = np.asarray(apply_rope(jnp.asarray(x), jnp.cos(a), jnp.sin(a))).reshape(4)
    z0, z1 = (1 + 2j) * np.exp(1j * 0.3), (3 + 4j) * np.exp(-1.1j)
    np.testing.assert_allclose(out, [z0.real, z0.imag, z1.real, z1.imag], rtol=1e-6)


def test_freqs_with_position_interpolation_hand_computed():
    # d=8, theta=100, factor 4: every pair divided by 4, unlike YaRN which keeps pair 0 (test above).
    cfg = ModelConfig.tiny(qk_rope_head_dim=8, rope_theta=100.0, original_seq_len=16, max_seq_len=64,
                           rope_factor=4.0, rope_scaling="pi")
    np.testing.assert_allclose(rope_freqs(cfg), [100 ** (-i / 8) / 4 for i in (0, 2, 4, 6)], rtol=1e-12)
    cos, _ = rope_tables(cfg)
    np.testing.assert_allclose(cos[40], np.cos(40 * np.array([100 ** (-i / 8) / 4 for i in (0, 2, 4, 6)])), atol=1e-7)


def test_freqs_without_scaling_extrapolate():
    cfg = ModelConfig.tiny(qk_rope_head_dim=8, rope_theta=100.0, original_seq_len=16, max_seq_len=64,
                           rope_factor=4.0, rope_scaling="none")
    np.testing.assert_allclose(rope_freqs(cfg), [100 ** (-i / 8) for i in (0, 2, 4, 6)], rtol=1e-12)
    assert rope_tables(cfg)[0].shape == (64, 4)
