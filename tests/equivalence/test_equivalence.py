"""TF (tf_impl) against Flax (reference) on the same canonical state; tolerances: harness.interop.tolerances.TOLERANCES."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop import equivalence as eq
from harness.interop.equivalence_f64 import ORACLE
from harness.interop.rows import compare_row, expert_set_agreement
from harness.interop.tolerances import TOLERANCES
from tests.equivalence.conftest import DEFAULT_CHECKS, rows_for



def _failures(rows) -> str:
    return "\n".join(f"{r.component}: max abs {r.max_abs_err:.3g} (tolerance {r.tolerance.text()}), "
                     f"routing {r.routing_agreement}, {r.note}" for r in rows if not r.passed)


@pytest.mark.parametrize("config", sorted(DEFAULT_CHECKS))
def test_every_quantity_within_tolerance(config):
    rows = list(rows_for(config, DEFAULT_CHECKS[config]))
    assert rows
    assert all(r.passed for r in rows if r.gate), _failures(rows)
    # Context-only rows here are the float64 oracle's fp32 floor alone: every TF-vs-Flax row still gates.
    assert all(r.component.startswith(ORACLE) and "floor" in r.component for r in rows if not r.gate)


@pytest.mark.parametrize("config", sorted(DEFAULT_CHECKS))
def test_logits_meet_the_criterion_and_routing_agrees(config):
    rows = rows_for(config, DEFAULT_CHECKS[config])
    logits = [r for r in rows if r.component.startswith("logits")]
    assert logits and max(r.max_abs_err for r in logits) <= 1e-5
    routing = [r.routing_agreement for r in rows if r.routing_agreement is not None]
    assert all(a == 1.0 for a in routing)
    assert bool(routing) == (config != "tiny-dense")  # dense-only: no routing anywhere


def test_the_configs_cover_dense_moe_groups_yarn_and_bench_widths():
    dense, moe, yarn, layer = (eq.named_config(n) for n in ("tiny-dense", "tiny", "tiny-yarn", "bench-layer"))
    assert not any(dense.is_moe_layer(i) for i in range(dense.n_layers + dense.n_mtp_modules))
    assert moe.is_moe_layer(1) and moe.n_expert_groups == 2 and moe.n_mtp_modules == 1
    assert yarn.yarn_active and not moe.yarn_active
    bench = ModelConfig.bench()
    assert layer.n_layers == 1 and layer.is_moe_layer(0)
    widths = ("dim", "moe_inter_dim", "n_routed_experts", "n_expert_groups", "kv_lora_rank")
    assert all(getattr(layer, w) == getattr(bench, w) for w in widths)


def test_tiny_covers_every_component():
    names = " | ".join(r.component for r in rows_for("tiny", eq.ALL))
    for part in ("RMSNorm", "RoPE tables", "MLA naive", "MLA absorb", "gate scores", "gate chosen experts",
                 "gate weights", "MoE output", "MTP module output", "logits, all", "MTP logits", "loss: balance",
                 "gradients w.r.t. all", "AdamW alone", "train step: updated weights", "gate biases after",
                 "greedy generation, absorb", "greedy generation, naive", "fp8 e4m3 tie cases", "fp8 quantize_weight",
                 "fp8 quantize_act", "fp8 matmul", "fp8 mode: logits"):
        assert part in names, part


def test_yarn_rows_report_the_yarn_frequencies():
    names = [r.component for r in rows_for("tiny-yarn", DEFAULT_CHECKS["tiny-yarn"])]
    assert "RoPE freqs (YaRN)" in names


def test_row_verdict_follows_the_tolerance():
    tol = TOLERANCES["logits"]
    assert compare_row("x", np.zeros(3), np.full(3, tol.atol), "logits").passed
    assert not compare_row("x", np.zeros(3), np.full(3, 2 * tol.atol), "logits").passed
    assert not compare_row("x", np.zeros(3), np.zeros(4), "logits").passed
    assert not compare_row("x", np.array([np.nan]), np.zeros(1), "logits").passed
    assert not compare_row("x", np.zeros(3), np.zeros(3), "logits", routing=0.99).passed


def test_expert_set_agreement_ignores_order_and_padding():
    a = np.array([[0, 1], [2, 3], [-1, -1]])
    b = np.array([[1, 0], [2, 4], [-1, -1]])
    assert expert_set_agreement(a, b) == 0.5


def test_every_tolerance_is_justified():
    for key, tol in TOLERANCES.items():
        assert tol.why and tol.per in ("element", "tensor"), key


def test_track_numbers_for_the_benchmarks():
    out = eq.track_numbers("tiny", tf_compiled=False)  # the benchmark runs it compiled
    assert set(out) == {"max_abs_logits_error", "routing_agreement"}
    assert out["max_abs_logits_error"] <= 1e-5 and out["routing_agreement"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("config", ["tiny-dense", "tiny-yarn"])
def test_full_set_on_the_other_tiny_configs(config):
    rows = list(rows_for(config, eq.ALL))
    assert all(r.passed for r in rows), _failures(rows)


@pytest.mark.slow
def test_tiny_with_xla_compiled_tf():
    rows = eq.compare(ModelConfig.tiny(), checks=("logits", "generation"), tf_compiled=True)
    assert all(r.passed for r in rows), _failures(rows)
