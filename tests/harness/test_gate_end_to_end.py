"""The regression gate both ways, end to end: `python -m harness run` on a scratch git repo.

The scratch suite impersonates a few real benchmarks (so the real criteria bindings read them) with
cheap NumPy work instead of models: ``Throughput.track_tf_over_flax`` is a ratio of two workloads timed
in alternating pairs, exactly as the real one, ``Prefill.time_prefill`` an asv ``time_`` benchmark,
``KVCache.track_reduction_vs_mha`` a deterministic number. The "library under test" is
``benchmarks/work.py``; its ``EXTRA_WORK`` is the test-only switch that slows a build down.

The ratio's workloads are single-threaded NumPy, timed in thread CPU seconds: wall-clock time on this
shared host is dominated by other processes (see ``_seconds``), which would test the host, not the gate.

* False alarms: commit 1 is run, commit 2 changes only a text file and is run: nothing is flagged.
* Detection: commit 3 sets ``EXTRA_WORK = 0.25`` (25% more work on the TF side): the throughput ratio
  regression is flagged and `run` exits 1.

It also checks what the gate relies on in asv itself: ``--record-samples`` keeps the samples of
``time_`` benchmarks and of ``track_`` benchmarks that return ``benchmarks.common.sampled(...)``, with
asv's statistics; and the full tier (classes named ``*Full``) runs only with ``--full``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MACHINE_DIR = Path(".asv") / "results" / "harness-host"

WORK = '''
"""The scratch "library under test": two workloads; EXTRA_WORK makes the TF side do more."""
import numpy as np

EXTRA_WORK = {extra}
UNITS = 60          # one unit: one pass of a few elementwise ufuncs over 32K floats (~0.1 ms)
_X = np.linspace(0.0, 1.0, 1 << 15)


def _spin(units):
    x = _X
    for _ in range(units):
        x = np.sqrt(x * 0.5 + 0.25)
    return float(x[0])


def tf_side():
    return _spin(int(round(UNITS * (1 + EXTRA_WORK))))


def flax_side():
    return _spin(2 * UNITS)
'''

BENCH_THROUGHPUT = '''
"""Scratch impersonation of bench_throughput: PX.tf_prefill_speed, PX.tf_decode_speed."""
import time

from . import work

PAIRS = 15


def _seconds(call):
    # CPU seconds of this thread: on a shared 2-core host at load average 9, wall-clock ratios of these
    # ~10 ms single-threaded workloads spread 0.5-6.8x, thread CPU time 1.82-1.99x (measured).
    start = time.thread_time()
    call()
    return time.thread_time() - start


class Throughput:
    params = [("prefill", "decode")]
    param_names = ["phase"]
    version = "1"

    def setup(self, phase):
        work.tf_side(), work.flax_side()

    def track_tf_over_flax(self, phase):
        """PX.tf_prefill_speed: per alternating pair, Flax time / TF time, with their spread."""
        ratios = []
        for _ in range(PAIRS):
            flax = _seconds(work.flax_side)
            ratios.append(flax / _seconds(work.tf_side))
        return {"samples": ratios, "number": 1}  # what benchmarks.common.sampled returns
    track_tf_over_flax.unit = "ratio"


class Prefill:
    params = [("tf-xla",), (256,)]
    param_names = ["framework", "seq_len"]
    number, repeat, rounds, warmup_time = 1, 9, 1, 0.0
    version = "1"

    def time_prefill(self, framework, seq_len):
        """PX.tf_prefill_speed (context)."""
        work.tf_side()
'''

BENCH_KVCACHE = '''
"""Scratch impersonation of bench_kvcache: a deterministic number without spread."""


class KVCache:
    params = [("bench", "v3_671b")]
    param_names = ["dims"]
    version = "1"

    def track_reduction_vs_mha(self, dims):
        """P1.mla_kv_reduction."""
        return {"bench": 0.875, "v3_671b": 0.9859375}[dims]
    track_reduction_vs_mha.unit = "fraction"


class KVCacheFull:
    """A full-tier class: left out of `python -m harness run` unless --full."""
    version = "1"

    def track_slow_number(self):
        """P1.mla_kv_reduction."""
        return 1.0
    track_slow_number.unit = "fraction"
'''


def _git(root: Path, *argv: str) -> str:
    return subprocess.check_output(["git", *argv], cwd=root, text=True).strip()


def _commit(root: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return _git(root, "rev-parse", "HEAD")


def _run(root: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--config", str(root / "asv.conf.json"), *extra]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)


def _results(root: Path, sha: str) -> dict:
    (path,) = (root / MACHINE_DIR).glob(f"{sha[:8]}-*.json")
    data = json.loads(path.read_text())
    return {name: dict(zip(data["result_columns"], row)) for name, row in data["results"].items()}


def scratch_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "asv.conf.json", root / "asv.conf.json")
    _git(tmp_path, "init", "-q", "-b", "main", str(root))
    return root


def test_unchanged_code_flags_nothing_and_a_slowed_build_is_flagged(tmp_path):
    root = scratch_repo(tmp_path)
    first = _commit(root, {"benchmarks/__init__.py": "", "benchmarks/work.py": WORK.format(extra=0.0),
                           "benchmarks/bench_throughput.py": BENCH_THROUGHPUT,
                           "benchmarks/bench_kvcache.py": BENCH_KVCACHE}, "first")
    proc = _run(root, "--full")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # asv kept the samples and its statistics, for the time_ benchmark and for the sampled track_.
    rows = _results(root, first)
    for name in ("bench_throughput.Throughput.track_tf_over_flax", "bench_throughput.Prefill.time_prefill"):
        row = rows[name]
        assert all(len(s) >= 9 for s in row["samples"]) and all(r > 1 for r in row["stats_repeat"]), row
        assert all(a <= v <= b for a, v, b in zip(row["stats_ci_99_a"], row["result"], row["stats_ci_99_b"]))
    assert 1.7 < rows["bench_throughput.Throughput.track_tf_over_flax"]["result"][0] < 2.3
    assert "bench_kvcache.KVCacheFull.track_slow_number" in rows  # --full ran the full tier

    # (a) false alarms: a commit that changes no code, run again, flags nothing.
    second = _commit(root, {"NOTE": "docs only\n"}, "second: no code change")
    proc = _run(root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "REGRESSION" not in proc.stdout
    assert "bench_kvcache.KVCacheFull.track_slow_number" not in _results(root, second)  # no --full: left out

    # (b) detection: 25% more work on the TF side is a regression of the TF/Flax ratio, and run exits 1.
    _commit(root, {"benchmarks/work.py": WORK.format(extra=0.25)}, "third: slowed build")
    proc = _run(root)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    flagged = [line for line in proc.stdout.splitlines() if line.startswith("REGRESSION")]
    assert any("PX.tf_prefill_speed track_tf_over_flax[phase=prefill]" in line and "significant" in line
               for line in flagged), proc.stdout[-3000:]
    assert not any("mla_kv_reduction" in line for line in flagged)
    md = (root / "report" / "roadmap.md").read_text()
    assert f"## Regressions against commit `{second[:8]}`" in md and "track_tf_over_flax[phase=prefill]" in md
