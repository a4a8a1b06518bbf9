"""Write asv 0.6 results files for tests: a commit's rows, with asv's own statistics of given samples.

``add_commit`` appends a commit to a copy of the fixture tree (``tmp_results``), taking each benchmark's
version from the tree's benchmarks.json, so that the harness reads it exactly as it reads asv's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asv_runner.statistics import compute_stats

from tests.harness.conftest import MACHINE

COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
           "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]


def row(values: list[Any] | None, params: list[list[str]], version: str, started_at: int,
        samples: list[list[float] | None] | None = None) -> list[Any]:
    """One ``results[name]`` list; with ``samples`` (one list per value), asv's stats replace the values."""
    if samples is not None:
        samples = [None if s is None else [float(x) for x in s] for s in samples]
        values = list(values or [None] * len(samples))
    stats: list[dict | None] = [None] * len(values or [])
    if samples is not None:
        for j, s in enumerate(samples):
            if s is not None:
                values[j], stats[j] = compute_stats(s, 1)
    col = lambda key: [None if s is None else s[key] for s in stats]  # noqa: E731
    return [values, params, version, started_at, 1.0, col("ci_99_a"), col("ci_99_b"), col("q_25"), col("q_75"),
            col("number"), col("repeat"), samples, None]


def add_commit(results_dir: Path, sha: str, date: int, rows: dict[str, dict[str, Any]],
               env: str = "existing-py_work_main_.venv_bin_python") -> Path:
    """Write ``<results_dir>/<MACHINE>/<sha8>-<env>.json`` holding ``rows`` ({name: {values, samples,
    version}}; params and the default version come from benchmarks.json). Returns the path."""
    benchmarks = json.loads((results_dir / "benchmarks.json").read_text())
    results = {}
    for k, (name, spec) in enumerate(rows.items()):
        info = benchmarks[name]
        results[name] = row(spec.get("values"), info["params"], spec.get("version", info["version"]),
                            date + 1000 * (k + 1), spec.get("samples"))
    data = {"commit_hash": sha, "env_name": env, "date": date,
            "params": {"machine": MACHINE, "python": "/work/main/.venv/bin/python"},
            "python": "/work/main/.venv/bin/python", "requirements": {}, "env_vars": {},
            "result_columns": COLUMNS, "results": results, "durations": {}, "version": 2}
    path = results_dir / MACHINE / f"{sha[:8]}-{env}.json"
    path.write_text(json.dumps(data))
    return path
