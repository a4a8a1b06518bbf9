"""The main job's process budget: ``python -m harness run`` must finish in under 10 minutes on 2 cores.

The job's time goes to processes. asv runs every parameter combination of every benchmark in a fresh
interpreter (launch method ``spawn``), and a benchmark that builds its fixture in ``setup`` pays the
interpreter, the imports (TensorFlow or JAX: seconds each), the bench model's weights and its compiles
in that process, every time. A class with ``setup_cache`` pays them once, in one process, and its
benchmarks then run in light processes that only unpickle the cached numbers. So the budget counts:

* heavy processes: one per parameter combination of a benchmark without ``setup_cache``, plus one per
  ``setup_cache``;
* light processes: one per parameter combination of a benchmark reading a ``setup_cache`` (0.3-1 s each);
* and asv's discovery, one process that imports every benchmark module: it must import neither
  TensorFlow nor JAX (every light process imports its benchmark module too).

The limits are the counts of the suite as issue 13 left it (44 heavy, 28 light; the suite before had 45
heavy and 17 light, and its main job took 12-13 min on the 2-core host, issue 13), plus the two
``setup_cache`` processes of issue 14's pipeline benchmarks (PipelineBubbles measures stage costs once;
CommModel is arithmetic only) and their three readers, admitted after the main job's wall time was measured with them,
and the three readers of TrainThroughput's ``setup_cache`` (its ratio and the two first-step times; the
class was one heavy process before and still is), and the three readers of Throughput's
``track_matmul_read_bandwidth`` (issue 13: the read rate of XLA's product at 1, 2 and 8 rows, measured in
Throughput's existing ``setup_cache``; a few seconds of the job). A benchmark that adds a
heavy process must fit the budget by removing one, or go to the full tier (a class named ``*Full``, which
``run`` leaves out and which does not count here). These counts are a guard, not a timing: the main job's
wall time is measured by running it.

The suite is read with asv's own discovery (asv_runner), as ``asv run`` reads it.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

from asv_runner.discovery import disc_benchmarks

from benchmarks.common import REPO_ROOT

HEAVY_LIMIT = 46
LIGHT_LIMIT = 37


def _main_job():
    """asv's benchmark objects of the main job (the full tier, classes named ``*Full``, left out)."""
    benches = list(disc_benchmarks(str(REPO_ROOT / "benchmarks")))
    return [b for b in benches if not b.name.split(".")[1].endswith("Full")]


def _combos(bench) -> int:
    return len(list(itertools.product(*bench.params))) if bench.params else 1


def process_counts() -> tuple[int, int]:
    """(heavy, light) processes of one main job (module docstring)."""
    heavy = light = 0
    caches = set()
    for bench in _main_job():
        if bench._setup_cache is None:  # noqa: SLF001 (asv_runner keeps it private; it is what asv runs)
            heavy += _combos(bench)
        else:
            light += _combos(bench)
            caches.add(bench.setup_cache_key)
    return heavy + len(caches), light


def test_heavy_processes_fit_the_budget():
    heavy, _ = process_counts()
    assert heavy <= HEAVY_LIMIT, (
        f"the main job runs {heavy} heavy benchmark processes (each imports a framework or builds a fixture), "
        f"over the budget of {HEAVY_LIMIT} that keeps `python -m harness run` under 10 minutes on 2 cores: share "
        "a setup_cache, drop a parameter nobody reads, or move the benchmark to the full tier (class *Full)")


def test_light_processes_fit_the_budget():
    _, light = process_counts()
    assert light <= LIGHT_LIMIT, (
        f"the main job runs {light} light benchmark processes (setup_cache readers), over the budget of "
        f"{LIGHT_LIMIT}")


def test_discovery_imports_no_framework():
    """asv discovers the suite by importing every benchmark module in one process, and every benchmark process
    imports its module again: an import of TensorFlow or JAX there costs seconds per process."""
    code = ("import json, sys\n"
            "from asv_runner.discovery import disc_benchmarks\n"
            f"list(disc_benchmarks({str(REPO_ROOT / 'benchmarks')!r}))\n"
            "print(json.dumps(sorted(m for m in ('tensorflow', 'jax', 'flax') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert imported == [], (f"discovering the suite imports {imported}: import frameworks inside setup/setup_cache "
                            "(and in helpers the benchmark modules import at module level), not at module level")
