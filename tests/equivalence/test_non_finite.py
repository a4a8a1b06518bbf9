"""The equivalence suite never passes NaN/Inf, and refuses a state that ``load_state_dict`` refuses."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop import equivalence as eq
from harness.interop.bridge import build_model, export_state
from harness.interop.rows import compare_row
from harness.io import save_safetensors


@pytest.fixture(scope="module")
def state():
    return export_state(build_model("tf", ModelConfig.tiny(), seed=0, compiled=False))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_identical_non_finite_outputs_fail(value):
    a = np.array([1.0, value, 2.0])
    row = compare_row("x", a, a.copy(), "logits")
    assert not row.passed and "non-finite" in row.note


def test_non_finite_on_one_side_only_fails_and_says_which():
    row = compare_row("x", np.array([1.0, 2.0]), np.array([1.0, np.nan]), "logits")
    assert not row.passed and "Flax 1" in row.note and "TF 0" in row.note


def test_cli_refuses_a_state_with_a_nan_head(state, tmp_path, capsys):
    bad = dict(state)
    bad["head.weight"] = state["head.weight"].copy()
    bad["head.weight"][0, 0] = np.nan
    path = tmp_path / "nan_head.safetensors"
    save_safetensors(bad, path)
    assert eq.main(["--state", str(path), "--checks=logits"]) == 2
    out, err = capsys.readouterr()
    assert "head.weight" in err and "non-finite" in err and "PASS" not in out


def test_cli_refuses_an_int32_state(state, tmp_path, capsys):
    bad = dict(state)
    bad["norm.weight"] = np.ones_like(state["norm.weight"], dtype=np.int32)
    path = tmp_path / "int.safetensors"
    save_safetensors(bad, path)
    assert eq.main(["--state", str(path), "--checks=rmsnorm"]) == 2
    assert "floating point" in capsys.readouterr().err


def test_compare_refuses_an_int32_state(state):
    bad = dict(state)
    bad["norm.weight"] = np.ones_like(state["norm.weight"], dtype=np.int32)
    with pytest.raises(ValueError, match="floating point"):
        eq.compare(ModelConfig.tiny(), bad, checks=("rmsnorm",))


def test_finite_weights_whose_logits_overflow_fail_every_logits_row(state):
    big = dict(state)
    big["head.weight"] = np.full_like(state["head.weight"], 3e38)  # finite, but h @ head.T overflows to inf
    rows = [r for r in eq.compare(ModelConfig.tiny(), big, checks=("logits",)) if r.component.startswith("logits")]
    assert rows and all(not r.passed and "non-finite" in r.note for r in rows)
