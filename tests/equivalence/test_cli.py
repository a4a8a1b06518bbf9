"""``python -m harness equivalence`` in-process: exit codes and messages for good and bad input."""

from __future__ import annotations

from harness.config import ModelConfig
from harness.interop import equivalence as eq
from harness.interop.bridge import build_model, export_state
from harness.io import save_safetensors
from harness.state import expected_shapes

FAST = "--checks=rmsnorm,rope"  # the full comparison is tests/equivalence/test_equivalence.py's job


def test_good_run_prints_the_table_and_exits_0(capsys, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_safetensors(export_state(build_model("flax", ModelConfig.tiny(), seed=5)), path)
    assert eq.main(["--config", "tiny", "--state", str(path), FAST]) == 0
    out = capsys.readouterr().out
    for column in ("component", "max abs error", "max rel error", "tolerance", "routing agreement", "verdict"):
        assert column in out
    assert "RoPE tables" in out and "PASS" in out and "FAIL" not in out


def test_missing_state_file_is_a_clear_error(capsys, tmp_path):
    assert eq.main(["--state", str(tmp_path / "nope.safetensors"), FAST]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "nope.safetensors" in err and "Traceback" not in err


def test_corrupt_state_file_is_a_clear_error(capsys, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file")
    assert eq.main(["--state", str(path), FAST]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_state_of_another_config_lists_every_mismatch(capsys, tmp_path):
    state = export_state(build_model("tf", eq.named_config("tiny-dense"), seed=0, compiled=False))
    state["extra.weight"] = state["norm.weight"]
    del state["mtp.0.enorm.weight"]
    path = tmp_path / "dense.safetensors"
    save_safetensors(state, path)
    assert eq.main(["--config", "tiny", "--state", str(path), FAST]) == 2
    err = capsys.readouterr().err
    assert "missing tensor layers.1.ffn.gate.weight (expected [8, 64])" in err
    assert "missing tensor layers.1.ffn.experts.7.w3.weight (expected [32, 64])" in err
    assert "tensor layers.1.ffn.w1.weight" not in err or "unexpected tensor layers.1.ffn.w1.weight" in err
    assert "unexpected tensor layers.1.ffn.w1.weight with shape [128, 64]" in err
    assert "unexpected tensor extra.weight with shape [64]" in err
    assert "missing tensor mtp.0.enorm.weight (expected [64])" in err


def test_wrong_shapes_are_listed_with_expected_and_found(capsys, tmp_path):
    state = export_state(build_model("tf", ModelConfig.tiny(dim=32), seed=0, compiled=False))
    path = tmp_path / "narrow.safetensors"
    save_safetensors(state, path)
    assert eq.main(["--state", str(path), FAST]) == 2
    err = capsys.readouterr().err
    assert "tensor embed.weight has shape [256, 32], expected [256, 64]" in err
    expected = expected_shapes(ModelConfig.tiny())
    assert err.count("has shape") == sum(1 for k, v in state.items() if v.shape != expected[k])


def test_unknown_config_and_checks_exit_2(capsys):
    assert eq.main(["--config", "huge"]) == 2
    assert "unknown config 'huge'" in capsys.readouterr().err
    assert eq.main(["--checks", "vibes"]) == 2
    assert "unknown checks ['vibes']" in capsys.readouterr().err
    assert eq.main(["--config", "/no/such.json"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dispatch_through_the_harness_cli(capsys):
    from harness.cli import main

    assert main(["equivalence", "--config", "huge"]) == 2
