"""How rows are judged: error over tolerance, context rows, the summary, the FP8 conditioning control, and
the AdamW rows (the optimizer alone, and the sensitivity bound of a whole train step)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop import equivalence as eq, equivalence_fp8, equivalence_train
from harness.interop.rows import compare_row, summary
from harness.interop.tolerances import TOLERANCES


def test_error_over_tolerance_is_one_at_the_limit_and_inf_for_a_differing_exact_check():
    tol = TOLERANCES["logits"]  # atol only
    assert compare_row("x", np.full(3, tol.atol), np.zeros(3), "logits").error_over_tolerance == pytest.approx(1.0)
    assert compare_row("x", np.full(3, tol.atol / 4), np.zeros(3), "logits").error_over_tolerance == pytest.approx(0.25)
    assert compare_row("x", np.ones(2), np.ones(2), "fp8_values").error_over_tolerance == 0.0
    assert compare_row("x", np.ones(2), np.array([1.0, 1.25]), "fp8_values").error_over_tolerance == math.inf
    per_tensor = compare_row("x", np.array([1.0, 1e-9]), np.array([1.0, 0.0]), "gradients")  # rtol of max|ref|
    assert per_tensor.error_over_tolerance == pytest.approx(1e-9 / (1e-7 + 1e-4))


def test_summary_counts_gating_rows_and_leaves_context_rows_out():
    rows = [compare_row("a", np.zeros(2), np.zeros(2), "logits"),
            compare_row("b", np.full(2, 5e-6), np.zeros(2), "logits"),
            compare_row("c", np.ones(2), np.zeros(2), "logits")]
    rows[2] = eq.replace(rows[2], gate=False)
    assert rows[2].verdict == "INFO" and rows[1].verdict == "PASS"
    assert summary(rows) == {"passed": 2, "total": 2, "worst": pytest.approx(0.5), "context": 1}
    rows[1] = eq.replace(rows[1], passed=False, over_tolerance=3.0)
    assert summary(rows)["passed"] == 1 and summary(rows)["worst"] == 3.0


def test_fp8_model_rows_gate_only_when_the_one_ulp_control_is_quiet(monkeypatch):
    """At tiny the control (Flax FP8 vs itself, embeddings one ulp off) stays inside the tolerance and the
    rows gate; a control that moves the logits (here: embeddings scaled by 1.5) turns them into context."""
    rows = [r for r in eq.compare(ModelConfig.tiny(), checks=("fp8",)) if r.component.startswith("fp8 mode")]
    assert len(rows) == 2 and all(r.gate and r.passed for r in rows), rows
    monkeypatch.setattr(equivalence_fp8, "_one_ulp_up",
                        lambda state, rng: {**state, "embed.weight": state["embed.weight"] * np.float32(1.5)})
    rows = [r for r in eq.compare(ModelConfig.tiny(), checks=("fp8",)) if r.component.startswith("fp8 mode")]
    assert all(not r.gate and r.verdict == "INFO" and "control" in r.note for r in rows), rows


def _state_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    state = {"a.weight": (rng.standard_normal((64, 96)) * 0.05).astype(np.float32),
             "b.weight": (1.0 + 0.1 * rng.standard_normal(96)).astype(np.float32)}
    # gradients over 8 decades, so that clipping (global norm > 1) and eps both matter
    grads = {n: (rng.standard_normal(v.shape) * np.exp(rng.uniform(np.log(1e-9), np.log(1.0), v.shape)))
             .astype(np.float32) for n, v in state.items()}
    return state, grads


def test_adamw_alone_agrees_to_ulps_and_catches_a_different_optimizer():
    state, grads = _state_and_grads()
    tc_t, tc_f = equivalence_train.train_configs()
    row = equivalence_train._optimizer_row(state, grads, tc_t, tc_f)
    assert row.passed, row
    for wrong in (dict(b1=0.901), dict(b2=0.951), dict(eps=1.1e-8), dict(weight_decay=0.11), dict(min_lr_ratio=0.11)):
        tc_wrong, _ = equivalence_train.train_configs(**wrong)
        assert not equivalence_train._optimizer_row(state, grads, tc_wrong, tc_f).passed, wrong


def _one_step(state, grads, tc):
    import jax.numpy as jnp

    from reference.optim import adamw_step, learning_rate

    params, _ = adamw_step(tc, {n: jnp.asarray(v) for n, v in state.items()}, None,
                           {n: jnp.asarray(g) for n, g in grads.items()}, learning_rate(0, tc))
    return {n: np.asarray(v) for n, v in params.items()}


def test_train_step_rows_bound_adamw_sensitivity_to_a_gradient_difference():
    """The same optimizer fed gradients that differ by 1e-8 (as TF's and Flax's do): near eps' = eps/clip
    factor the updates differ by far more than 1e-6, which the sensitivity bound must accept; an error
    added where AdamW is insensitive must still fail the tight row."""
    state, g_f = _state_and_grads(1)
    rng = np.random.default_rng(2)
    g_t = {n: (g + 1e-8 * rng.standard_normal(g.shape)).astype(np.float32) for n, g in g_f.items()}
    _, tc = equivalence_train.train_configs()
    after_t, after_f = _one_step(state, g_t, tc), _one_step(state, g_f, tc)
    assert max(np.abs(after_t[n] - after_f[n]).max() for n in state) > 1e-6  # what the old floor rejected
    rows = equivalence_train._step_rows(state, after_t, after_f, g_t, g_f, tc)
    assert [r.passed for r in rows] == [True, True], rows
    insensitive = np.abs(g_f["a.weight"]) > 1e-2
    after_t["a.weight"] = np.where(insensitive, after_t["a.weight"] + 1e-5, after_t["a.weight"])
    rows = equivalence_train._step_rows(state, after_t, after_f, g_t, g_f, tc)
    assert not rows[0].passed and rows[1].passed
