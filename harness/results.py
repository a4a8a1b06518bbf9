"""Reading asv's own results files (asv 0.6, results format version 2). Read-only; never re-runs anything.

Layout under ``results_dir`` (``.asv/results``):

* ``benchmarks.json``: every benchmark of the suite: type, unit, ``param_names``, ``params`` (lists of
  ``repr()`` strings), ``version``.
* ``<machine>/machine.json``: ``{"machine": <name>, "version": 1}``.
* ``<machine>/<sha8>-<env_name>.json``: one commit in one environment. ``results[name]`` is a list aligned
  with ``result_columns``; its ``result`` is one value per ``itertools.product(*params)`` combination,
  or ``null`` for the whole benchmark. Per value: ``null`` = the benchmark raised, ``NaN`` = skipped
  (``NotImplementedError`` in ``setup``).

asv keeps the stderr of failed benchmarks in memory only (``Results._stderr`` is never saved). The
harness' ``run`` command captures it while asv runs and writes a sidecar next to the results tree:
``<results_dir>/../stderr/<machine>/<sha8>-<env_name>.json`` (``{benchmark name: stderr text}``),
which ``load_run`` attaches when present.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

RESULTS_API_VERSION = 2
BENCHMARKS_API_VERSION = 2
MACHINE_API_VERSION = 1


class ResultsError(Exception):
    """asv results that cannot be read as asked. The message names the file, the problem and the fix."""


class Status(str, enum.Enum):
    """How asv recorded one benchmark value; only OK carries a number."""

    OK = "ok"
    FAILED = "failed"      # null: the benchmark raised (or timed out)
    SKIPPED = "skipped"    # NaN: NotImplementedError in setup
    MISSING = "missing"    # no entry for this benchmark or parameter combination in the commit's results


@dataclass(frozen=True)
class BenchmarkInfo:
    """One entry of ``benchmarks.json``."""

    name: str
    type: str
    unit: str
    param_names: tuple[str, ...]
    params: tuple[tuple[str, ...], ...]
    version: str | None = None
    pretty_name: str | None = None


@dataclass(frozen=True)
class Value:
    """A looked-up benchmark value: its status, the number when OK, any captured stderr, and the
    benchmark's asv ``version`` (its source hash, or the ``version`` attribute) at that commit."""

    status: Status
    value: float | None = None
    stderr: str = ""
    version: str | None = None


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's row in one results file."""

    name: str
    params: tuple[tuple[str, ...], ...]
    result: tuple[float | None, ...] | None
    started_at: int | None = None
    duration: float | None = None
    version: str | None = None

    def combinations(self) -> list[tuple[str, ...]]:
        """Parameter combinations in asv's order (itertools.product of the param lists)."""
        return list(itertools.product(*self.params))

    def value_at(self, combination: tuple[str, ...]) -> tuple[Status, float | None]:
        """Status and value at one parameter ``combination`` (asv repr strings, in ``params`` order).

        asv writes null for a benchmark that raised and NaN for one skipped via NotImplementedError;
        those map to FAILED and SKIPPED so a verdict can tell "broke" from "not applicable".
        """
        combos = self.combinations()
        if combination not in combos:
            return Status.MISSING, None
        if self.result is None:
            return Status.FAILED, None
        index = combos.index(combination)
        if index >= len(self.result):
            return Status.MISSING, None
        raw = self.result[index]
        if raw is None:
            return Status.FAILED, None
        value = float(raw)
        if math.isnan(value):
            return Status.SKIPPED, None
        return Status.OK, value


@dataclass(frozen=True)
class Run:
    """One results file: one commit, one environment, one machine."""

    path: Path
    commit_hash: str
    env_name: str
    date: int
    machine: str
    python: str
    benchmarks: dict[str, BenchmarkResult]
    stderr: dict[str, str] = field(default_factory=dict)

    @property
    def last_started_at(self) -> int:
        """Start time (ms since the epoch) of the latest benchmark in this file; 0 when none recorded one."""
        return max((b.started_at or 0 for b in self.benchmarks.values()), default=0)


@dataclass(frozen=True)
class CommitResults:
    """All runs of one commit on one machine, merged: per benchmark the most recently started row wins."""

    commit_hash: str
    date: int
    runs: tuple[Run, ...]

    def row(self, name: str) -> tuple[BenchmarkResult, Run] | None:
        """Benchmark ``name``'s most recently started row and the run holding it; None when no run has it.

        A rerun of a single benchmark (``-b``) thus supersedes the older full run only for that benchmark.
        """
        best: tuple[BenchmarkResult, Run] | None = None
        for run in self.runs:
            row = run.benchmarks.get(name)
            if row is not None and (best is None or (row.started_at or 0) >= (best[0].started_at or 0)):
                best = (row, run)
        return best


def _load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{what} {path} does not exist; run `python -m harness run` to create it") from None
    except OSError as exc:
        raise ResultsError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)  # Python's json accepts the bare NaN/Infinity tokens asv writes
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{what} {path} is corrupt or truncated (JSON error at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); restore it from git (`git checkout -- {path}`) or delete it and re-run asv"
        ) from None


def _check_version(data: Any, path: Path, expected: int, what: str) -> None:
    if not isinstance(data, dict):
        raise ResultsError(f"{what} {path} is not a JSON object; it is not an asv file")
    version = data.get("version")
    if version != expected:
        raise ResultsError(f"{what} {path} has format version {version!r}; this harness reads version {expected} "
                           f"(asv 0.6). Run `asv update` with asv 0.6 to convert it")


def load_benchmarks(results_dir: str | os.PathLike) -> dict[str, BenchmarkInfo]:
    """Parse ``<results_dir>/benchmarks.json``."""
    path = Path(results_dir) / "benchmarks.json"
    data = _load_json(path, "benchmark list")
    _check_version(data, path, BENCHMARKS_API_VERSION, "benchmark list")
    out = {}
    for name, entry in data.items():
        if name == "version":
            continue
        try:
            out[name] = BenchmarkInfo(
                name=name, type=entry["type"], unit=entry.get("unit", ""),
                param_names=tuple(entry.get("param_names", ())),
                params=tuple(tuple(p) for p in entry.get("params", ())),
                version=entry.get("version"), pretty_name=entry.get("pretty_name"),
            )
        except (KeyError, TypeError) as exc:
            raise ResultsError(f"benchmark list {path}: entry {name!r} is malformed ({exc!r}); re-run asv") from None
    return out


def stderr_path(results_dir: str | os.PathLike, machine: str, results_file_name: str) -> Path:
    """Where the harness keeps asv's stderr for one results file (asv itself does not save it)."""
    return Path(results_dir).parent / "stderr" / machine / results_file_name


def load_run(path: str | os.PathLike, machine: str | None = None) -> Run:
    """Parse one asv results file; with ``machine``, refuse a file recorded on another machine."""
    path = Path(path)
    data = _load_json(path, "results file")
    _check_version(data, path, RESULTS_API_VERSION, "results file")
    try:
        columns = data["result_columns"]
        file_machine = data["params"]["machine"]
        rows = {}
        for name, values in data["results"].items():
            row = dict(zip(columns, values))
            result = row.get("result")
            rows[name] = BenchmarkResult(
                name=name,
                params=tuple(tuple(p) for p in (row.get("params") or ())),
                result=None if result is None else tuple(result),
                started_at=row.get("started_at"), duration=row.get("duration"), version=row.get("version"),
            )
        run_fields = dict(commit_hash=data["commit_hash"], env_name=data["env_name"], date=data["date"] or 0,
                          python=data.get("python", ""))
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"results file {path} is missing {exc} or malformed; it is not an asv 0.6 results file") \
            from None
    if machine is not None and file_machine != machine:
        raise ResultsError(f"results file {path} was recorded on machine {file_machine!r}, not {machine!r}; "
                           f"pass --machine {file_machine} or move the file")
    stderr: dict[str, str] = {}
    sidecar = stderr_path(path.parent.parent, file_machine, path.name)
    if sidecar.exists():
        stderr = {str(k): str(v) for k, v in _load_json(sidecar, "stderr capture").items()}
    return Run(path=path, machine=file_machine, benchmarks=rows, stderr=stderr, **run_fields)


def available_machines(results_dir: str | os.PathLike) -> list[str]:
    """Names of the machines with a machine.json under ``results_dir``, sorted; [] when it is missing.

    Used in error messages so that a wrong ``--machine`` lists the valid choices.
    """
    root = Path(results_dir)
    return sorted(p.name for p in root.iterdir() if (p / "machine.json").exists()) if root.is_dir() else []


def load_machine(results_dir: str | os.PathLike, machine: str) -> list[CommitResults]:
    """Every commit recorded for ``machine``, oldest first (by commit date, then run time)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsError(f"results directory {root} does not exist; run `python -m harness run` first")
    mdir = root / machine
    if not mdir.is_dir():
        raise ResultsError(f"no results for machine {machine!r} in {root}; machines with results: "
                           f"{available_machines(root) or 'none'}. Pass --machine NAME")
    machine_json = mdir / "machine.json"
    mdata = _load_json(machine_json, "machine file")
    _check_version(mdata, machine_json, MACHINE_API_VERSION, "machine file")
    if mdata.get("machine") != machine:
        raise ResultsError(f"machine file {machine_json} names machine {mdata.get('machine')!r}, not {machine!r}; "
                           f"the directory was copied from another machine")
    runs = [load_run(p, machine) for p in sorted(mdir.glob("*.json")) if p.name != "machine.json"]
    return group_by_commit(runs)


def group_by_commit(runs: Iterable[Run]) -> list[CommitResults]:
    """Merge runs by commit hash, ordered oldest first by commit date, then by the latest run's start time."""
    by_commit: dict[str, list[Run]] = {}
    for run in runs:
        by_commit.setdefault(run.commit_hash, []).append(run)
    commits = [CommitResults(sha, max(r.date for r in rs), tuple(rs)) for sha, rs in by_commit.items()]
    return sorted(commits, key=lambda c: (c.date, max(r.last_started_at for r in c.runs)))


def lookup(commit: CommitResults, benchmarks: dict[str, BenchmarkInfo], name: str,
           selection: dict[str, Any]) -> Value:
    """The value of benchmark ``name`` at the parameter ``selection`` (plain values or asv repr strings)."""
    info = benchmarks.get(name)
    if info is None:
        raise ResultsError(f"unknown benchmark {name!r}: benchmarks.json does not list it. Write it in benchmarks/ "
                           f"or fix the binding in harness/criteria.py")
    if set(selection) != set(info.param_names):
        raise ResultsError(f"benchmark {name} has parameters {list(info.param_names)}; the selection gave "
                           f"{sorted(selection)}")
    combination = []
    for pname, pvalues in zip(info.param_names, info.params):
        wanted = selection[pname]
        match = [v for v in pvalues if v == wanted or v == repr(wanted)]
        if not match:
            raise ResultsError(f"benchmark {name}: {pname}={wanted!r} is not one of its values {list(pvalues)}")
        combination.append(match[0])
    found = commit.row(name)
    if found is None:
        return Value(Status.MISSING)
    row, run = found
    status, value = row.value_at(tuple(combination))
    return Value(status, value, run.stderr.get(name, "") if status is Status.FAILED else "", row.version)
