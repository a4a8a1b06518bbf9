"""Quiet output: the main job's terminal shows progress and failures, not every benchmark's C++ start-up logs,
while every benchmark's stderr, a failing one's in full, is still kept under .asv/stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reports.asv_env import stable_env_name
from tests.harness.scratch_asv import MACHINE, REPO

NOISE = "I0000 00:00:1.0 12 cpu_feature_guard.cc:227] noisy start-up log of a passing benchmark"
CONTEXT = "first line written before the failure"
ERROR = "boom: the benchmark broke"
BENCH = f'''
import sys


class Noise:
    version = "1"

    def track_ok(self):
        print({NOISE!r}, file=sys.stderr)
        return 1.0

    def track_fails(self):
        print({CONTEXT!r}, file=sys.stderr)
        raise ValueError({ERROR!r})
'''


def _git(root: Path, *argv: str) -> str:
    return subprocess.check_output(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=root,
                                   text=True).strip()


def test_terminal_shows_failures_only_and_stderr_is_kept_in_full(tmp_path):
    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    shutil.copy(REPO / "asv.conf.json", root)
    shutil.copy(REPO / "benchmarks" / "__init__.py", root / "benchmarks")
    (root / "benchmarks" / "bench_noise.py").write_text(BENCH)
    _git(tmp_path, "init", "-q", "-b", "main", str(root))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "noise")
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--quick", "-b", "Noise",
                           "--config", str(root / "asv.conf.json")], cwd=root, capture_output=True, text=True,
                          timeout=600)
    shown = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), shown[-3000:]
    assert "bench_noise.Noise.track_ok" in shown and "bench_noise.Noise.track_fails" in shown   # progress
    assert "noisy start-up log" not in shown                  # a passing benchmark's stderr is not shown
    assert ERROR in shown and CONTEXT in shown                # a failing one's is
    sha = _git(root, "rev-parse", "HEAD")
    sidecar = root / ".asv" / "stderr" / MACHINE / f"{sha[:8]}-{stable_env_name('%d.%d' % sys.version_info[:2])}.json"
    kept = json.loads(sidecar.read_text())
    failed = kept["bench_noise.Noise.track_fails"]
    assert CONTEXT in failed and "Traceback" in failed and f"ValueError: {ERROR}" in failed
    assert NOISE in kept["bench_noise.Noise.track_ok"]        # kept in full too, just not printed


def _tf_import_stderr(preamble: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", f"{preamble}import tensorflow"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300).stderr


def test_benchmark_package_turns_tf_cpp_info_logs_off():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    control = _tf_import_stderr("", env)
    if "cpu_feature_guard" not in control:
        pytest.skip("TensorFlow prints no cpu_feature_guard line on this CPU; nothing to silence")
    assert "cpu_feature_guard" not in _tf_import_stderr("import benchmarks; ", env)
    out = subprocess.run([sys.executable, "-c", "import benchmarks, os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"],
                         cwd=REPO, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"}, capture_output=True, text=True)
    assert out.stdout.strip() == "0"                          # a user's own setting wins
