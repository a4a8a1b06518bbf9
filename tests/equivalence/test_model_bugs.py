"""Regression tests for model bugs the equivalence suite found, each as the minimal case that failed.

Both were fixed in tf_impl while this suite was written; the reason strings say what was wrong.
"""

from __future__ import annotations

import numpy as np


_FP8_LOOPED = (
    "tf_impl/moe.py MoE._looped (inference dispatch: model(tokens), prefill, decode) concatenates w1 and w3 "
    "into one [2F, D] matrix before fp8_matmul, so with moe_inter_dim % 128 != 0 a 128x128 weight block "
    "straddles w1 and w3 and they share one scale; the tiled (training) path and the reference quantise "
    "w1 and w3 separately. In FP8 mode on ModelConfig.tiny (F=32) model(tokens) differs from "
    "forward_aux(tokens) and from the reference by ~0.2 in the logits.")


def test_tf_fp8_looped_dispatch_quantises_w1_and_w3_separately():
    import tensorflow as tf

    from tf_impl.moe import MoE

    moe = MoE(dim=64, moe_inter_dim=32, n_routed_experts=4, n_shared_experts=0, n_activated_experts=2,
              n_expert_groups=1, n_limited_groups=1, score_func="sigmoid", route_scale=1.0, fp8=True,
              rng=np.random.default_rng(0))
    moe.w3.assign(moe.w3 * 100.0)  # w3's amax dominates any block it shares with w1
    x = tf.constant(np.random.default_rng(1).standard_normal((1, 16, 64)).astype(np.float32))
    tiled, _ = moe(x, differentiable=True)
    looped, _ = moe(x, differentiable=False)
    np.testing.assert_allclose(looped.numpy(), tiled.numpy(), atol=1e-5, rtol=1e-5, err_msg=_FP8_LOOPED)


_ROPE_FP32 = (
    "tf_impl/rope.py rope_angles computes t * freqs in float32 (as DeepSeek's torch code does) and only then "
    "casts to float64 for cos/sin; the angle's rounding error grows with t (ulp(1023) / 2 = 3e-5 rad), so at "
    "the bench config's max_seq_len=1024 the TF tables are 3e-5 off the exact ones (the reference computes "
    "angles in float64). 16k-token configs would be ~1e-3 rad off. Fix: np.outer in float64, cast once.")


def test_tf_rope_tables_are_exact_to_float32_at_long_positions():
    from harness.config import ModelConfig
    from harness.interop.tolerances import TOLERANCES
    from reference.rope import rope_tables as flax_tables
    from tf_impl.rope import rope_tables as tf_tables

    cfg = ModelConfig.bench()
    tc, ts = tf_tables(cfg)
    fc, fs = flax_tables(cfg)
    tol = TOLERANCES["rope_tables"].atol
    assert np.abs(tc.numpy() - fc).max() <= tol and np.abs(ts.numpy() - fs).max() <= tol, _ROPE_FP32
