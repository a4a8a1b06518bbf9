"""The float64 oracle (harness.interop.equivalence_f64): a real float64 run, and the rule that decides
which rows gate when the fp32 floor itself approaches the logits tolerance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.interop import equivalence_f64 as f64
from harness.interop.rows import compare_row
from harness.interop.tolerances import TOLERANCES
from reference.linear import linear
from reference.norm import rms_norm
from tests.equivalence.conftest import rows_for

TOL = TOLERANCES["logits"].atol


def test_reference_kernels_keep_float64_and_widen_narrow_inputs():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8)), jnp.float64)
        assert rms_norm(x, jnp.ones(8, jnp.float64), 1e-6).dtype == jnp.float64
        assert linear(x, jnp.ones((8, 4), jnp.float64), fp8=False).dtype == jnp.float64
    assert rms_norm(jnp.ones((2, 8), jnp.bfloat16), jnp.ones(8), 1e-6).dtype == jnp.float32


def test_the_oracle_runs_in_float64_and_leaves_the_fp32_model_alone(suite_rows):
    from harness.config import Dtype, ModelConfig
    from harness.interop.bridge import build_model
    from harness.interop.equivalence import reference_state

    cfg = ModelConfig.tiny().replace(dtype=Dtype.FLOAT32)
    model = build_model("flax", cfg, reference_state(cfg))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    before = np.asarray(model(tokens))
    exact, routing = f64.float64_logits(model, tokens)
    assert [e.dtype for e in exact] == [np.float64] * (2 + cfg.n_mtp_modules)
    assert np.asarray(model(tokens)).dtype == np.float32 and np.array_equal(np.asarray(model(tokens)), before)
    gap = np.abs(exact[0] - before).max()
    assert 0 < gap < TOL  # a different, more exact answer: not the fp32 run again, and not another model
    assert "router_indices" in routing


def _fake_oracle(monkeypatch, exact):
    monkeypatch.setattr(f64, "float64_logits", lambda model, tokens: ([exact], {"router_indices": []}))


def test_tf_vs_flax_keeps_gating_below_the_floor_and_tf_is_held_to_exact(monkeypatch):
    exact = np.linspace(-5, 5, 64).reshape(2, 32)
    flax = (exact + 1e-6).astype(np.float32)
    tf = (exact + 2.5e-5).astype(np.float32)  # a bug-sized error
    _fake_oracle(monkeypatch, exact)
    row = compare_row("logits", tf, flax, "logits")
    judged, tf_row, floor = f64.oracle_rows(["model(tokens)"], [tf], [flax], None, None, {"router_indices": []}, [row])
    assert judged.gate and not judged.passed  # the floor is small: TF vs Flax decides, and fails
    assert tf_row.gate and not tf_row.passed and not floor.gate


def test_beyond_the_floor_the_float64_row_gates(monkeypatch):
    exact = np.linspace(-5, 5, 64).reshape(2, 32)
    flax = (exact + 0.7 * TOL).astype(np.float32)    # Flax's own fp32 error past half the tolerance
    good = (exact - 0.5 * TOL).astype(np.float32)    # TF closer to exact, yet 1.2 tol from Flax
    bad = (exact - 1.5 * TOL).astype(np.float32)
    _fake_oracle(monkeypatch, exact)
    for tf, ok in ((good, True), (bad, False)):
        row = compare_row("logits", tf, flax, "logits")
        judged, tf_row, floor = f64.oracle_rows(["model(tokens)"], [tf], [flax], None, None, {"router_indices": []}, [row])
        assert not judged.passed and not judged.gate and "fp32 floor" in judged.note
        assert tf_row.gate and tf_row.passed == ok and not floor.gate
    close = (exact + 0.4 * TOL).astype(np.float32)  # within tolerance of Flax: the comparison still gates
    judged, tf_row, _ = f64.oracle_rows(["model(tokens)"], [close], [flax], None, None, {"router_indices": []},
                                        [compare_row("logits", close, flax, "logits")])
    assert judged.gate and judged.passed and tf_row.passed


@pytest.mark.parametrize("config", ["tiny", "bench-layer"])
def test_the_suite_holds_tf_to_the_oracle(config, suite_rows):
    from tests.equivalence.conftest import DEFAULT_CHECKS

    rows = suite_rows(config, DEFAULT_CHECKS[config])
    oracle = [r for r in rows if r.component.startswith(f64.ORACLE)]
    assert oracle and all(r.passed for r in oracle if r.gate)
    assert any(r.gate and "TF fp32 vs float64" in r.component for r in oracle)


def test_comparisons_run_in_full_fp32_and_restore_the_settings():
    """TF32 (TF's GPU default) and JAX's default matmul precision would hide 1e-5 differences on GPUs."""
    import tensorflow as tf

    from harness.interop.equivalence import full_fp32

    tf.config.experimental.enable_tensor_float_32_execution(True)
    with full_fp32():
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
        assert jax.config.jax_default_matmul_precision == "highest"
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    assert jax.config.jax_default_matmul_precision in (None, "default")


def test_a_non_finite_floor_is_not_noise(monkeypatch):
    """Overflowing fp32 logits make Flax's distance from float64 infinite: that must fail, not excuse, the row."""
    exact = np.linspace(-5, 5, 64).reshape(2, 32)
    flax = exact.astype(np.float32)
    flax[0, 0] = np.inf
    tf = flax.copy()
    _fake_oracle(monkeypatch, exact)
    row = compare_row("logits", tf, flax, "logits")
    judged, tf_row, _ = f64.oracle_rows(["model(tokens)"], [tf], [flax], None, None, {"router_indices": []}, [row])
    assert judged.gate and not judged.passed and "non-finite" in judged.note
    assert tf_row.gate and not tf_row.passed
