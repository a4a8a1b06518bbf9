"""tf_impl.export: a SavedModel that a process importing only TensorFlow runs to tf_impl's logits and tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop.tolerances import TOLERANCES

CLIENT = Path(__file__).with_name("tf_only_client.py")


def _export(cfg: ModelConfig, path: Path, **kw):
    from tf_impl import Transformer
    from tf_impl.export import export_savedmodel

    model = Transformer(cfg, seed=0)
    return model, export_savedmodel(model, path, **kw)


def _tf_only_run(export_dir: Path, prompt: np.ndarray, n_new: int, tmp_path: Path) -> dict[str, np.ndarray]:
    """Run tests/tf_impl/tf_only_client.py in a fresh interpreter, outside the repository."""
    np.save(tmp_path / "prompt.npy", prompt)
    out = tmp_path / "client.npz"
    proc = subprocess.run([sys.executable, str(CLIENT), str(export_dir), str(tmp_path / "prompt.npy"), str(n_new),
                           str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _reference(model, prompt: np.ndarray, n_new: int) -> dict[str, np.ndarray]:
    """tf_impl's own answers: decode_step token by token, prefill of the whole prompt, greedy generate."""
    cache = model.new_cache(prompt.shape[0])
    steps = [model.decode_step(prompt[:, i], cache)[0].numpy() for i in range(prompt.shape[1])]
    logits, _ = model.prefill(prompt, model.new_cache(prompt.shape[0]))
    return {"decode_logits": np.stack(steps, 1), "prefill_logits": logits.numpy(),
            "tokens": model.generate(prompt, n_new)}


def _check_round_trip(cfg: ModelConfig, tmp_path: Path, prompt_len: int, n_new: int = 6, **export_kw) -> dict:
    model, path = _export(cfg, tmp_path / "export", **export_kw)
    prompt = np.random.default_rng(1).integers(0, cfg.vocab_size, (cfg.max_batch_size, prompt_len)).astype(np.int32)
    got = _tf_only_run(path, prompt, n_new, tmp_path)
    want = _reference(model, prompt, n_new)
    assert str(got["project_modules"]) == "", f"the client imported project code: {got['project_modules']}"
    # The decode signature runs tf_impl's own compiled decode step on the cache as a value, over the whole
    # max_seq_len cache (masked), while Transformer.decode reads only a length bucket (issue 13): the same
    # reductions over more (zero-weight) slots, so the project's decode-logits tolerance, as for prefill.
    tol = TOLERANCES["decode_logits"]
    err = np.abs(got["decode_logits"] - want["decode_logits"]).max()
    assert err <= tol.atol, f"decode logits differ by {err:.3g} > {tol.atol:g} ({tol.why})"
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    return {"got": got, "want": want, "model": model, "path": path}


def test_export_round_trip_in_a_tensorflow_only_process(tmp_path):
    """Chunks of 8 and 4 plus single tokens (a 15-token prompt) give tf_impl's prefill logits within the project's
    logits tolerance (the chunks attend over the whole max_seq_len cache, masked, so reductions run in another
    order) and exactly its greedy tokens."""
    cfg = ModelConfig.tiny()
    res = _check_round_trip(cfg, tmp_path, prompt_len=15, chunks=(8, 4))
    tol = TOLERANCES["logits"]
    err = np.abs(res["got"]["prefill_logits"] - res["want"]["prefill_logits"]).max()
    assert err <= tol.atol, f"prefill logits differ by {err:.3g} > {tol.atol:g} ({tol.why})"
    meta = json.loads((res["path"] / "assets.extra" / "serving.json").read_text())
    assert meta["batch_sizes"] == [cfg.max_batch_size] and meta["chunks"] == [8, 4]
    assert meta["config"] == cfg.to_dict() and meta["tokenizer"] == {"kind": "bytes", "vocab": 256}


def test_fp8_export_stores_e4m3_blocks_and_scales_and_serves_the_fp8_model(tmp_path):
    import tensorflow as tf
    from tensorflow.python.framework.dtypes import float8_e4m3fn

    from tf_impl.export import _fp8_sites
    from tf_impl.fp8 import quantize_weight

    cfg = ModelConfig.tiny(dtype="fp8")
    res = _check_round_trip(cfg, tmp_path, prompt_len=11, chunks=(8,))
    reader = tf.train.load_checkpoint(str(res["path"] / "variables" / "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    codes = sorted(k for k, d in dtypes.items() if d == float8_e4m3fn)
    sites = _fp8_sites(res["model"])
    assert len(codes) == len(sites) > 0
    loaded = tf.saved_model.load(str(res["path"]))
    for (module, attr), stored, scales in zip(sites, loaded.fp8_codes, loaded.fp8_scales):
        want_q, want_s = quantize_weight(getattr(module, attr))
        assert stored.dtype == float8_e4m3fn
        np.testing.assert_array_equal(stored.numpy().view(np.uint8), want_q.numpy().view(np.uint8))
        np.testing.assert_array_equal(scales.numpy(), want_s.numpy())
    # No fp32 master copy of a quantised weight was saved: the fp32 variables are the others only.
    fp32_elements = sum(int(np.prod(reader.get_variable_to_shape_map()[k])) for k, d in dtypes.items()
                        if d == tf.float32)
    fp8_elements = sum(int(np.prod(getattr(m, a).shape)) for m, a in sites)
    dense = sum(int(np.prod(v.shape)) for name, (v, i, _) in res["model"].named_variables().items()
                if i in (None, 0) and not name.startswith("mtp."))
    assert fp32_elements < dense - fp8_elements + len(sites) * 64  # scales are a few elements per weight


def test_export_refuses_to_overwrite_and_bad_arguments(tmp_path):
    from tf_impl import Transformer
    from tf_impl.export import ExportError, export_savedmodel

    model = Transformer(ModelConfig.tiny(max_batch_size=2, max_seq_len=16), seed=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="already exists.*force"):
        export_savedmodel(model, tmp_path / "taken", chunks=(4,))
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match=r"batch_sizes=\[3\].*\[1, 2\]"):
        export_savedmodel(model, tmp_path / "x", batch_sizes=[3])
    with pytest.raises(ExportError, match="must not contain 1"):
        export_savedmodel(model, tmp_path / "x", chunks=(8, 1))
    with pytest.raises(ExportError, match=r"chunks=\[32\].*\[1, 16\]"):
        export_savedmodel(model, tmp_path / "x", chunks=(32,))
    export_savedmodel(model, tmp_path / "taken", batch_sizes=[1, 2], chunks=(4,), force=True)
    assert not (tmp_path / "taken" / "mine.txt").exists()
    loaded = json.loads((tmp_path / "taken" / "assets.extra" / "serving.json").read_text())
    assert loaded["batch_sizes"] == [1, 2] and not list(tmp_path.glob(".taken*"))


@pytest.mark.slow
def test_bench_export_round_trip_in_a_tensorflow_only_process(tmp_path):
    cfg = ModelConfig.bench()
    res = _check_round_trip(cfg, tmp_path, prompt_len=75, n_new=8)
    err = np.abs(res["got"]["prefill_logits"] - res["want"]["prefill_logits"]).max()
    assert err <= TOLERANCES["logits"].atol, err
