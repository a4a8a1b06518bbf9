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

Sampled values carry asv's statistics (``Spread``): the 99% confidence interval of the median, the
quartiles, the sample count and, when the run used ``--record-samples``, the samples themselves. asv
computes them for ``time_`` benchmarks and for any benchmark whose process returned
``{"samples": [...], "number": n}`` (``benchmarks.common.sampled``); the regression gate
(``harness.roadmap.gate``) decides significance from them as ``asv compare`` does.

A file in the results tree that is not an asv file at all (binary, or JSON that is not an object) is
skipped with a ``ResultsWarning`` naming it, so one stray file cannot block every report; a results
file that is damaged (truncated JSON, wrong version) is still an error, since its numbers would be lost.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULTS_API_VERSION = 2
BENCHMARKS_API_VERSION = 2
MACHINE_API_VERSION = 1


# A benchmark that skips (NotImplementedError in setup) with a message starting with AWAITING says that an
# input record of the benchmarked commit does not exist yet (the test-suite record of a commit whose tests
# have not been run): the value is unknown at that commit, not lost there, so validation lets the latest
# earlier value stand in, marked stale, and the regression gate does not count it against the commit.
AWAITING = "awaiting a record of this commit: "


class ResultsError(Exception):
    """asv results that cannot be read as asked. The message names the file, the problem and the fix."""


class ResultsWarning(UserWarning):
    """A file in the results tree was skipped; the message names it and says why."""


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
class Spread:
    """asv's statistics of one sampled value (``asv_runner.statistics.compute_stats``).

    ``ci_99`` is the 99% confidence interval of the median, ``q_25``/``q_75`` the quartiles, ``repeat``
    the number of samples, ``samples`` the raw samples when asv ran with ``--record-samples``.
    """

    ci_99: tuple[float, float]
    q_25: float
    q_75: float
    repeat: int
    samples: tuple[float, ...] | None = None

    def asv_stats(self) -> dict[str, float]:
        """The stats dict asv's own functions take (``ci_99_a``, ``ci_99_b``, ``q_25``, ``q_75``, ``repeat``)."""
        return {"ci_99_a": self.ci_99[0], "ci_99_b": self.ci_99[1], "q_25": self.q_25, "q_75": self.q_75,
                "repeat": self.repeat}


@dataclass(frozen=True)
class Value:
    """A looked-up benchmark value: its status, the number when OK, any captured stderr, the benchmark's
    asv ``version`` (its source hash, or the ``version`` attribute), asv's ``spread`` when sampled,
    ``measured_at``: the commit whose results hold it (an earlier one than asked for when the value is
    stale; None when no commit recorded it), and ``reason`` when the recorded value is unusable."""

    status: Status
    value: float | None = None
    stderr: str = ""
    version: str | None = None
    spread: Spread | None = None
    measured_at: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's row in one results file."""

    name: str
    params: tuple[tuple[str, ...], ...]
    result: tuple[float | None, ...] | None
    started_at: int | None = None
    duration: float | None = None
    version: str | None = None
    spreads: tuple[Spread | None, ...] = ()

    def combinations(self) -> list[tuple[str, ...]]:
        """Parameter combinations in asv's order (itertools.product of the param lists)."""
        return list(itertools.product(*self.params))

    def value_at(self, combination: tuple[str, ...]) -> tuple[Status, float | None]:
        """Status and value at one parameter ``combination`` (asv repr strings, in ``params`` order).

        asv writes null for a benchmark that raised and NaN for one skipped via NotImplementedError;
        those map to FAILED and SKIPPED so a verdict can tell "broke" from "not applicable". A value
        that is not a number (a string, a list: the file was edited by hand or written by another
        tool) is FAILED as well; ``invalid_reason`` says why.

        Args:
            combination: one value per parameter, as asv's repr strings (``("'prefill'", "64")``).

        Returns:
            ``(status, value)``: the float only when the status is OK; MISSING when the combination is not
            among ``params`` or the result list is too short.
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
        if raw is None or _not_a_number(raw):
            return Status.FAILED, None
        value = float(raw)
        if math.isnan(value):
            return Status.SKIPPED, None
        return Status.OK, value

    def invalid_reason(self, combination: tuple[str, ...], path: Path | str) -> str:
        """Why the recorded value at ``combination`` is unusable, or "" when it is a number, null or NaN.

        Args:
            combination: one value per parameter, as asv's repr strings.
            path: the results file the row came from, named in the message.

        Returns:
            a message naming the file, the value and the fix (re-run the benchmark); "" when the value is
            usable or absent.
        """
        combos = self.combinations()
        if self.result is None or combination not in combos or combos.index(combination) >= len(self.result):
            return ""
        raw = self.result[combos.index(combination)]
        if raw is None or not _not_a_number(raw):
            return ""
        return (f"results file {path} records {raw!r} for {self.name}{list(combination) or ''}, which is not a "
                f"number; asv writes numbers, null (raised) or NaN (skipped) only, so the file was edited or "
                f"written by another tool: re-run the benchmark (python -m harness run -b NAME) to replace it")

    def spread_at(self, combination: tuple[str, ...]) -> Spread | None:
        """asv's statistics at ``combination``, or None when the value was not sampled."""
        combos = self.combinations()
        if combination not in combos:
            return None
        index = combos.index(combination)
        return self.spreads[index] if index < len(self.spreads) else None


def _not_a_number(raw: Any) -> bool:
    """True for a recorded value that is neither null nor a JSON number (bools are not numbers here)."""
    return raw is not None and (isinstance(raw, bool) or not isinstance(raw, (int, float)))


def _spreads(row: dict[str, Any], count: int) -> tuple[Spread | None, ...]:
    """Per-combination ``Spread`` from asv's ``stats_*`` and ``samples`` columns (each a list or null)."""
    def column(key: str) -> list[Any]:
        values = row.get(key)
        return list(values) + [None] * (count - len(values)) if isinstance(values, list) else [None] * count

    ci_a, ci_b, q_25, q_75 = (column(k) for k in ("stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75"))
    repeat, samples = column("stats_repeat"), column("samples")
    out: list[Spread | None] = []
    for j in range(count):
        numbers = (ci_a[j], ci_b[j], q_25[j], q_75[j])
        if any(v is None or _not_a_number(v) for v in numbers):
            out.append(None)
            continue
        raw = samples[j]
        kept = tuple(float(x) for x in raw if x is not None and not _not_a_number(x)) if isinstance(raw, list) else None
        reps = repeat[j] if isinstance(repeat[j], int) and not isinstance(repeat[j], bool) else len(kept or ())
        out.append(Spread((float(ci_a[j]), float(ci_b[j])), float(q_25[j]), float(q_75[j]), reps, kept or None))
    return tuple(out)


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


class _NotAnAsvFile(ResultsError):
    """A file in the results tree that is not an asv file at all: skipped with a warning, not an error."""


def _load_json(path: Path, what: str) -> Any:
    """Parse ``path``; raises ResultsError naming the file, or ``_NotAnAsvFile`` for binary content.

    Text that does not parse is reported as corrupt or truncated when it starts like a JSON object (a
    damaged asv file whose numbers must not be silently dropped), and as not an asv file otherwise.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{what} {path} does not exist; run `python -m harness run` to create it") from None
    except OSError as exc:
        raise ResultsError(f"cannot read {what} {path}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotAnAsvFile(f"{path} is not text (byte {exc.start} is not UTF-8), so it is not an asv {what}; "
                            f"move it out of the results directory") from None
    if "\x00" in text:
        raise _NotAnAsvFile(f"{path} holds NUL bytes, so it is not an asv {what}; move it out of the results "
                            f"directory")
    try:
        return json.loads(text)  # Python's json accepts the bare NaN/Infinity tokens asv writes
    except json.JSONDecodeError as exc:
        if not text.lstrip().startswith("{"):
            raise _NotAnAsvFile(f"{path} is not JSON ({exc.msg} at line {exc.lineno}), so it is not an asv "
                                f"{what}; move it out of the results directory") from None
        raise ResultsError(
            f"{what} {path} is corrupt or truncated (JSON error at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); restore it from git (`git checkout -- {path}`) or delete it and re-run asv"
        ) from None


def _check_version(data: Any, path: Path, expected: int, what: str) -> None:
    if not isinstance(data, dict):
        raise _NotAnAsvFile(f"{path} holds JSON that is not an object, so it is not an asv {what}; move it out "
                            f"of the results directory")
    version = data.get("version")
    if version != expected:
        raise ResultsError(f"{what} {path} has format version {version!r}; this harness reads version {expected} "
                           f"(asv 0.6). Run `asv update` with asv 0.6 to convert it")


def load_benchmarks(results_dir: str | os.PathLike) -> dict[str, BenchmarkInfo]:
    """Parse ``<results_dir>/benchmarks.json``.

    Args:
        results_dir: asv's results directory.

    Returns:
        ``{benchmark name: BenchmarkInfo}``. Raises ResultsError when the file is missing, of another asv
        format version, or has a malformed entry.
    """
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
    """Where the harness keeps asv's stderr for one results file (asv itself does not save it).

    Args:
        results_dir: asv's results directory; the capture lives beside it, in ``../stderr``.
        machine: the asv machine name.
        results_file_name: the results file's name (``<commit>-<env>.json``).

    Returns:
        ``<results_dir>/../stderr/<machine>/<results_file_name>`` (it may not exist).
    """
    return Path(results_dir).parent / "stderr" / machine / results_file_name


def load_run(path: str | os.PathLike, machine: str | None = None) -> Run:
    """Parse one asv results file; with ``machine``, refuse a file recorded on another machine.

    Args:
        path: the results file (``<results_dir>/<machine>/<commit>-<env>.json``).
        machine: the machine the file must have been recorded on; None accepts any.

    Returns:
        the Run, with the stderr captured beside it when there is a readable capture (an unreadable one
        is skipped with a ResultsWarning). Raises ResultsError for a malformed or foreign file.
    """
    path = Path(path)
    data = _load_json(path, "results file")
    if isinstance(data, dict) and not {"commit_hash", "result_columns", "results"} & set(data):
        raise _NotAnAsvFile(f"{path} is JSON without commit_hash, result_columns or results, so it is not an asv "
                            f"results file; move it out of the results directory")
    _check_version(data, path, RESULTS_API_VERSION, "results file")
    try:
        columns = data["result_columns"]
        file_machine = data["params"]["machine"]
        rows = {}
        for name, values in data["results"].items():
            row = dict(zip(columns, values))
            result = row.get("result")
            if result is not None and not isinstance(result, list):
                result = [result]  # a scalar where asv writes a list: keep it, value_at judges it
            rows[name] = BenchmarkResult(
                name=name,
                params=tuple(tuple(p) for p in (row.get("params") or ())),
                result=None if result is None else tuple(result),
                started_at=row.get("started_at"), duration=row.get("duration"), version=row.get("version"),
                spreads=_spreads(row, len(result or ())),
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
        try:
            captured = _load_json(sidecar, "stderr capture")
        except ResultsError as exc:  # the capture is a convenience: lose it, keep the results
            warnings.warn(ResultsWarning(f"skipped the stderr capture: {exc}"), stacklevel=2)
            captured = {}
        stderr = {str(k): str(v) for k, v in captured.items()} if isinstance(captured, dict) else {}
    return Run(path=path, machine=file_machine, benchmarks=rows, stderr=stderr, **run_fields)


def available_machines(results_dir: str | os.PathLike) -> list[str]:
    """Names of the machines with a machine.json under ``results_dir``, sorted; [] when it is missing.

    Used in error messages so that a wrong ``--machine`` lists the valid choices.
    """
    root = Path(results_dir)
    return sorted(p.name for p in root.iterdir() if (p / "machine.json").exists()) if root.is_dir() else []


def load_machine(results_dir: str | os.PathLike, machine: str) -> list[CommitResults]:
    """Every commit recorded for ``machine``, oldest first (by commit date, then run time).

    A JSON file in the machine's folder that is not an asv results file is skipped with a ResultsWarning;
    a results file that is malformed raises.

    Args:
        results_dir: asv's results directory.
        machine: the asv machine name (a folder of ``results_dir`` holding ``machine.json``).

    Returns:
        the runs merged per commit (``group_by_commit``). Raises ResultsError naming the machines that
        have results when ``machine`` has none.
    """
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
    runs = []
    for path in sorted(mdir.glob("*.json")):
        if path.name == "machine.json":
            continue
        try:
            runs.append(load_run(path, machine))
        except _NotAnAsvFile as exc:
            warnings.warn(ResultsWarning(f"skipped {exc}"), stacklevel=2)
    return group_by_commit(runs)


def group_by_commit(runs: Iterable[Run]) -> list[CommitResults]:
    """Merge runs by commit hash, ordered oldest first by commit date, then by the latest run's start time."""
    by_commit: dict[str, list[Run]] = {}
    for run in runs:
        by_commit.setdefault(run.commit_hash, []).append(run)
    commits = [CommitResults(sha, max(r.date for r in rs), tuple(rs)) for sha, rs in by_commit.items()]
    return sorted(commits, key=lambda c: (c.date, max(r.last_started_at for r in c.runs)))


def lookup(commit: CommitResults, benchmarks: dict[str, BenchmarkInfo], name: str,
           selection: dict[str, Any], earlier: Sequence[CommitResults] = ()) -> Value:
    """The value of benchmark ``name`` at the parameter ``selection`` (plain values or asv repr strings).

    When ``commit`` has no row for the benchmark (it was left out of a partial run: ``-b REGEX``, or the
    full tier not run), the most recent of the ``earlier`` commits (oldest first) that recorded it at
    the benchmark's current version supplies the value; ``Value.measured_at`` then names that commit.
    A row at ``commit`` that lacks the combination is MISSING at ``commit``: the benchmark ran and lost
    that value, so no older one stands in for it.

    Args:
        commit: the commit whose value is asked for.
        benchmarks: the parsed ``benchmarks.json`` (parameter names, values and current versions).
        name: the benchmark's asv name (``bench_module.Class.track_x``).
        selection: ``{parameter name: value}`` naming every parameter of the benchmark.
        earlier: older commits, oldest first, that may stand in when ``commit`` did not run the benchmark.

    Returns:
        the Value: its status, the number when OK, the captured stderr of a failure or skip, and the commit
        that measured it. Raises ResultsError for an unknown benchmark or a selection that does not fit it.
    """
    info = benchmarks.get(name)
    if info is None:
        raise ResultsError(f"unknown benchmark {name!r}: benchmarks.json does not list it. Write it in benchmarks/ "
                           f"or fix the binding in harness/roadmap/criteria.py")
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
    combo = tuple(combination)
    found = commit.row(name)
    if found is None:
        found = next((f for old in reversed(earlier) if (f := old.row(name)) is not None
                      and f[0].version == info.version and f[0].value_at(combo)[0] is not Status.MISSING), None)
        if found is None:
            return Value(Status.MISSING)
    row, run = found
    status, value = row.value_at(combo)
    # The captured output explains a failure (its traceback) or a skip (the NotImplementedError message).
    output = run.stderr.get(name, "") if status in (Status.FAILED, Status.SKIPPED) else ""
    return Value(status, value, output, row.version, row.spread_at(combo) if status is Status.OK else None,
                 run.commit_hash, row.invalid_reason(combo, run.path))
