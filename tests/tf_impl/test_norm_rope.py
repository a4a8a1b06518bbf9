"""RMSNorm and RoPE/YaRN tables against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from harness.config import ModelConfig
from tf_impl.norm import rms_norm
from tf_impl.rope import apply_rope, rope_angles, rope_freqs, yarn_correction_range


def test_rms_norm_hand_values():
    x = np.array([[3.0, 4.0]], np.float32)  # mean square 12.5
    out = rms_norm(tf.constant(x), tf.constant([1.0, 2.0]), 1e-6).numpy()
    r = 1 / math.sqrt(12.5 + 1e-6)
    np.testing.assert_allclose(out, [[3 * r, 8 * r]], rtol=1e-6)


def test_yarn_range_671b_is_10_23():
    cfg = ModelConfig.v3_671b()
    assert yarn_correction_range(cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast,
                                 cfg.beta_slow) == (10, 23)


def test_yarn_range_hand_computed_and_clamped():
    # corr_dim(r) = 64 * ln(4096 / (2 pi r)) / (2 ln 10000): r=32 -> 10.47, r=1 -> 22.51
    assert 64 * math.log(4096 / (2 * math.pi * 32)) / (2 * math.log(10000)) == pytest.approx(10.47, abs=0.01)
    # a tiny original length pushes low below 0 and a huge one pushes high past dim-1: both clamp
    assert yarn_correction_range(8, 10000.0, 8, 32, 1)[0] == 0
    assert yarn_correction_range(8, 10000.0, 10**12, 32, 1)[1] == 7


def test_rope_freqs_without_yarn_are_plain():
    cfg = ModelConfig.tiny(max_seq_len=64, original_seq_len=64)  # not longer than original: no YaRN
    np.testing.assert_allclose(rope_freqs(cfg), [1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75], rtol=1e-6)


def test_rope_freqs_with_yarn_hand_computed():
    cfg = ModelConfig.tiny(max_seq_len=128, original_seq_len=64, rope_factor=4.0)  # R=8: four pairs
    base = np.array([1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75])
    low, high = yarn_correction_range(8, 10000.0, 64, 32, 1)
    # corr_dim(32) = 8 ln(64/(64 pi)) / (2 ln 1e4) < 0 -> 0 ; corr_dim(1) = 8 ln(64/(2 pi))/(2 ln 1e4) = 1.008 -> 2
    assert (low, high) == (0, 2)
    ramp = np.clip((np.arange(4) - 0) / 2, 0, 1)          # [0, .5, 1, 1]
    expected = base / 4 * ramp + base * (1 - ramp)        # smooth = 1 - ramp
    np.testing.assert_allclose(rope_freqs(cfg), expected, rtol=1e-6)
    assert rope_angles(cfg).shape == (128, 4)
    np.testing.assert_allclose(rope_angles(cfg)[5], 5 * expected, rtol=1e-5)


def test_softmax_scale_uses_mscale_squared():
    cfg = ModelConfig.v3_671b()
    m = 0.1 * math.log(40.0) + 1
    assert m == pytest.approx(1.3689, abs=1e-4)
    assert cfg.softmax_scale == pytest.approx(192 ** -0.5 * m * m)


def test_apply_rope_rotates_interleaved_pairs():
    x = tf.constant([[1.0, 0.0, 2.0, 3.0]])               # pairs (1,0) and (2,3)
    angles = np.array([[math.pi / 2, math.pi]])
    out = apply_rope(x, tf.constant(np.cos(angles), tf.float32), tf.constant(np.sin(angles), tf.float32)).numpy()
    # (1 + 0j) * i = (0 + 1j);  (2 + 3j) * -1 = (-2 - 3j)
    np.testing.assert_allclose(out, [[0.0, 1.0, -2.0, -3.0]], atol=1e-6)


def test_position_interpolation_divides_every_frequency():
    # R=8, theta=1e4, factor 4, 128 > 64: PI is base / 4 for all four pairs, the high frequency included.
    cfg = ModelConfig.tiny(max_seq_len=128, original_seq_len=64, rope_factor=4.0, rope_scaling="pi")
    np.testing.assert_allclose(rope_freqs(cfg), [0.25, 10000 ** -0.25 / 4, 10000 ** -0.5 / 4, 10000 ** -0.75 / 4],
                               rtol=1e-12)
    np.testing.assert_allclose(rope_angles(cfg)[100], 100 * rope_freqs(cfg), rtol=1e-12)


def test_plain_rope_extends_the_tables_with_the_original_frequencies():
    cfg = ModelConfig.tiny(max_seq_len=256, original_seq_len=64, rope_factor=4.0, rope_scaling="none")
    np.testing.assert_allclose(rope_freqs(cfg), [1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75], rtol=1e-12)
    assert rope_angles(cfg).shape == (256, 4)
    assert rope_angles(cfg)[200, 0] == pytest.approx(200.0)


@pytest.mark.parametrize("scaling", ["yarn", "pi", "none"])
def test_no_scaling_within_the_original_length(scaling):
    cfg = ModelConfig.tiny(max_seq_len=64, original_seq_len=64, rope_scaling=scaling)
    np.testing.assert_allclose(rope_freqs(cfg), [1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75], rtol=1e-12)
