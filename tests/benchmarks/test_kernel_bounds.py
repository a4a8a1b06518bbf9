"""benchmarks.kernel_bounds times the product under test against TF's in-place path: both must compute
the MoE's values, or the comparison would time different work."""

import json

import numpy as np
import pytest

from benchmarks import kernel_bounds as kb
from harness.config import ModelConfig
from harness.interop.tolerances import TOLERANCES


def numpy_experts(layer, weights, indices, x):
    """The routed experts written out per (token, slot) in numpy: an oracle independent of both variants."""
    w1, w2, w3 = (v.numpy() for v in (layer.w1, layer.w2, layer.w3))
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for slot, e in enumerate(indices[t]):
            h = x[t] @ w1[e]
            h = h / (1.0 + np.exp(-h)) * (x[t] @ w3[e])
            out[t] += weights[t, slot] * (h @ w2[e])
    return out


@pytest.fixture(scope="module")
def routed():
    """Two tiny MoE layers of distinct weights, 12 tokens routed through each."""
    cfg = ModelConfig.tiny()
    x = np.random.default_rng(3).standard_normal((12, cfg.dim), dtype=np.float32)
    return x, kb.routed_layers(cfg, cfg.n_routed_experts, x, 2)


def test_both_variants_compute_the_routed_experts(routed):
    x, layers = routed
    tol = TOLERANCES["moe"]
    for variant in (kb.xla_experts, kb.onednn_experts):
        ys = variant(layers)(x)
        assert len(ys) == len(layers)
        for y, (layer, weights, indices) in zip(ys, layers):
            np.testing.assert_allclose(y, numpy_experts(layer, weights, indices, x), atol=tol.atol, rtol=tol.rtol)


def test_the_layers_route_differently_and_bytes_count_used_experts(routed):
    x, layers = routed
    assert not np.array_equal(layers[0][2], layers[1][2])  # distinct gates: distinct experts per layer
    cfg = ModelConfig.tiny()
    per_expert = 3 * cfg.dim * cfg.moe_inter_dim * 4  # w1, w3 [D, F] and w2 [F, D], fp32
    used = sum(len(np.unique(indices)) for _, _, indices in layers)
    assert kb.expert_bytes(layers) == per_expert * used


def test_alternate_takes_medians_and_rejects_empty_runs():
    calls = {"a": lambda: None, "b": lambda: sum(range(1000))}
    times = kb.alternate(calls, rounds=3, repeats=2)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    with pytest.raises(ValueError, match="rounds and repeats"):
        kb.alternate(calls, rounds=0, repeats=1)


def test_cli_reports_both_rows_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "bounds.json"
    result = kb.main(["--config", "tiny", "--rounds", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "2x the floor needs" in printed and "ratio" in printed
    saved = json.loads(out.read_text())
    assert saved["decode"]["need_gbs"] == pytest.approx(saved["decode"]["copy_gbs"] / 2)
    assert set(saved["sparsity"]["ratio"]) == {"xla", "onednn"} and result["config"] == "tiny"
    before = out.read_text()
    with pytest.raises(SystemExit):
        kb.main(["--config", "tiny", "--json", str(out)])
    assert "exists" in capsys.readouterr().err and out.read_text() == before
