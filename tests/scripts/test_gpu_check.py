"""``scripts/gpu_check.py``: the CPU expectations round-trip through ``--check`` at ``tiny``, a planted
mismatch fails the check, and ``--check`` runs without TensorFlow (the GPU machine has none).

The expectations are made once in this process (TF and Flax at ``tiny``); the default-suite checks then
run in the same process at the highest matmul precision, so their programs are the ones already compiled.
The whole dry run (both precisions, in a fresh interpreter, as on the GPU machine) is ``slow``. No timings.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script()


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpucheck") / "expected"
    assert gpu_check.main(["--make-expected", str(out), "--configs", "tiny"]) == 0
    return out


def _check(expected: Path, out: Path, *extra: str) -> tuple[int, dict]:
    rc = gpu_check.main(["--check", str(expected), "--out", str(out), "--allow-cpu", "--configs", "tiny",
                         "--no-timings", *extra])
    return rc, json.loads((out / "gpu_check.json").read_text())


def test_round_trip_on_cpu_passes_and_writes_the_report(expected, tmp_path):
    files = sorted(p.name for p in expected.iterdir())
    assert files == ["meta.json", "tiny.npz"]
    assert sum(p.stat().st_size for p in expected.iterdir()) < 2 << 20  # no weights: the state comes from the seed

    rc, report = _check(expected, tmp_path, "--precisions", "highest")
    assert rc == 0, report["errors"] or [r for r in report["rows"] if r["verdict"] == "FAIL"]
    assert report["ok"] is True
    assert report["complete"] is True
    assert {"environment", "rows", "steps", "errors", "summary", "tf", "elapsed_s", "state_sha256"} <= set(report)
    assert "NOT MEASURED" in report["tf"]
    assert report["environment"]["platform"] == "cpu"
    rows = {(r["precision"], r["what"]): r for r in report["rows"]}
    assert rows[("-", "canonical state regenerated from the seed")]["verdict"] == "PASS"
    # The same program on the same backend: the Flax-CPU rows agree to the last bit.
    for what in ("forward logits vs FLAX-CPU", "decode logits vs FLAX-CPU", "loss part loss vs FLAX-CPU"):
        assert rows[("highest", what)]["verdict"] == "PASS" and rows[("highest", what)]["max_abs"] <= 1e-6
    assert rows[("highest", "greedy decode tokens vs TF-CPU")]["verdict"] == "PASS"
    assert rows[("highest", "forward logits vs float64 oracle (CPU)")]["verdict"] == "PASS"
    assert report["summary"]["PASS"] >= 15 and report["summary"]["FAIL"] == 0


@pytest.mark.slow
def test_the_whole_dry_run_in_a_fresh_interpreter(expected, tmp_path):
    """As the GPU machine runs it (both precisions, no TensorFlow), but with ``--allow-cpu`` and no timings."""
    argv = [str(SCRIPT), "--check", str(expected), "--out", str(tmp_path), "--allow-cpu", "--configs", "tiny",
            "--no-timings"]
    code = (f"import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = {argv!r}; "  # no TF, as on the GPU
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] is True and report["tensorflow_imported"] is False
    # Default precision is reported, never gating.
    assert {r["verdict"] for r in report["rows"] if r["precision"] == "default"} == {"INFO"}
    assert "SUMMARY: OK" in out.stdout


def test_a_planted_mismatch_fails_the_check(expected, tmp_path):
    planted = tmp_path / "planted"
    shutil.copytree(expected, planted)
    data = dict(np.load(planted / "tiny.npz"))
    data["logits_tf"][0, 3, 7] += 1e-3  # one TF logit off by 100x the logits tolerance
    data["decode_tokens_flax"][1, -1] = (data["decode_tokens_flax"][1, -1] + 1) % 256
    np.savez_compressed(planted / "tiny.npz", **data)

    rc, report = _check(planted, tmp_path / "out", "--precisions", "highest")
    assert rc == 1 and report["ok"] is False
    failed = {r["what"] for r in report["rows"] if r["verdict"] == "FAIL"}
    assert failed == {"forward logits vs TF-CPU", "greedy decode tokens vs FLAX-CPU"}
    row = next(r for r in report["rows"] if r["what"] == "forward logits vs TF-CPU")
    assert row["max_abs"] == pytest.approx(1e-3, rel=0.05)


def test_check_refuses_to_overwrite_a_report(expected, tmp_path):
    (tmp_path / "gpu_check.json").write_text("{}")
    with pytest.raises(SystemExit, match="--force"):
        gpu_check.main(["--check", str(expected), "--out", str(tmp_path), "--allow-cpu", "--configs", "tiny"])
    assert (tmp_path / "gpu_check.json").read_text() == "{}"


def test_check_path_imports_no_tensorflow():
    """What ``--check`` imports, in a fresh interpreter where importing TensorFlow fails, as on the GPU image."""
    code = ("import importlib.util, sys\n"
            "sys.modules['tensorflow'] = None\n"
            f"spec = importlib.util.spec_from_file_location('g', {str(SCRIPT)!r})\n"
            "g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)\n"
            "import reference, reference.train, benchmarks.common, harness.interop.rows, harness.interop.tolerances\n"
            "g.train_config()\n"
            "print(sorted(m for m, v in sys.modules.items() if v is not None\n"
            "             and m.split('.')[0] in ('tensorflow', 'tf_impl', 'keras')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
