"""The asv benchmark suite as asv itself sees it: names, parameters, units, versions.

The criteria (``harness.roadmap.criteria``) name benchmarks, parameter values and units; the suite in
``benchmarks/`` defines them. There is one source for each: the benchmark code. This module asks asv's own
discovery (``asv_runner.discovery.list_benchmarks``, the code ``asv run`` executes to write
``benchmarks.json``) for the suite, and returns it as the ``harness.roadmap.results.BenchmarkInfo`` records
that ``benchmarks.json`` is read into, so a binding is checked against the same description asv records.

Discovery imports the benchmark modules and instantiates their classes; it runs no setup and no benchmark
(TensorFlow and JAX are only imported inside setup functions).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

from harness.roadmap.results import BenchmarkInfo

REPO_ROOT = Path(__file__).resolve().parents[2]


class SuiteError(RuntimeError):
    """asv's discovery could not read the benchmark suite; the message names the folder and the cause."""


def benchmark_dir(config: str | os.PathLike = REPO_ROOT / "asv.conf.json") -> Path:
    """The suite's folder: the asv config's ``benchmark_dir`` (asv's default ``benchmarks``), beside the config."""
    config = Path(config)
    conf: dict[str, Any] = json.loads(config.read_text()) if config.exists() else {}
    return (config.parent / conf.get("benchmark_dir", "benchmarks")).resolve()


def info_from_asv(entry: Mapping[str, Any]) -> BenchmarkInfo:
    """One benchmark as asv describes it (an entry of ``benchmarks.json`` or of its discovery list)."""
    return BenchmarkInfo(name=entry["name"], type=entry["type"], unit=entry.get("unit", ""),
                         param_names=tuple(entry.get("param_names", ())),
                         params=tuple(tuple(p) for p in entry.get("params", ())),
                         version=entry.get("version"), pretty_name=entry.get("pretty_name"))


def discover(root: str | os.PathLike | None = None) -> dict[str, BenchmarkInfo]:
    """The suite under ``root`` (default: ``benchmark_dir()``) by asv's discovery, keyed by full asv name.

    Parameter values are asv's: the ``repr`` strings it records in ``benchmarks.json``.

    Args:
        root: the benchmark package; None uses the asv config's ``benchmark_dir``.

    Returns:
        ``{module.Class.method: BenchmarkInfo}`` for every benchmark asv finds.

    Raises:
        SuiteError: the folder is missing, or a benchmark module fails to import (the message says which).
    """
    from asv_runner.discovery import list_benchmarks

    root = Path(root) if root is not None else benchmark_dir()
    if not (root / "__init__.py").exists():
        raise SuiteError(f"{root} is not a benchmark package (no __init__.py); point the asv config's "
                         f"benchmark_dir at the suite")
    out = io.StringIO()
    try:
        list_benchmarks(str(root), out)
    except Exception as e:  # an import error in a benchmark module: name it, do not bury it in a traceback
        raise SuiteError(f"asv cannot discover the benchmarks in {root}: {type(e).__name__}: {e}; "
                         f"fix the module it names") from e
    return {entry["name"]: info_from_asv(entry) for entry in json.loads(out.getvalue())}


def doc_of(name: str, root: str | os.PathLike | None = None) -> str:
    """The docstring of benchmark ``name`` (``module.Class.method``), as asv's discovery finds it.

    Args:
        name: the benchmark's full asv name.
        root: the benchmark package; None uses the asv config's ``benchmark_dir``.

    Returns:
        the stripped docstring; "" when the benchmark has none.
    """
    from asv_runner.discovery import get_benchmark_from_name

    bench = get_benchmark_from_name(str(Path(root) if root is not None else benchmark_dir()), name)
    return (bench.func.__doc__ or "").strip()
