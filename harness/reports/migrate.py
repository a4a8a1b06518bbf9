"""Lossless migration of results recorded under asv's path-keyed ``existing`` environment to the stable key.

Results recorded by ``asv run -E existing:/some/venv/bin/python`` are named and parameterised by that path
(``<sha8>-existing-py_tmp_ci2_.venv_bin_python.json``, ``"python": "/tmp/ci2/.venv/bin/python"``), so each
checkout folder is a separate line in asv's HTML and ``asv compare`` cannot match them. ``migrate`` rewrites
such files to the key the harness now records under (``harness.reports.asv_env``: ``existing-stable-py3.11``,
``python`` = ``3.11``), together with their stderr sidecars (``<results_dir>/../stderr``):

* only ``env_name``, ``python`` and ``params.python`` change; every value, sample and statistic is kept;
* every file it touches is first copied to ``<results_dir>/../backup/<UTC time>/`` with a ``MIGRATION.json``
  listing each move and the sha256 of each original;
* two files that land on the same key (one commit recorded from two folders) are merged per benchmark, the
  most recently started row winning, as ``harness.roadmap.results.CommitResults.row`` already reads them; the
  superseded rows stay in the backup;
* the written files are re-read and checked against the originals before the originals are removed.

ARCHITECTURE.md: "Recorded results are never rewritten, except by a lossless migration that keeps a backup".
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.reports.asv_env import stable_env_name


class MigrationError(Exception):
    """The migration could not prove it lost nothing; nothing was removed. The message says what differed."""


@dataclass(frozen=True)
class Move:
    """One path-keyed results file and where it goes."""

    source: Path
    target: Path
    old_env_name: str
    old_python: str


@dataclass
class Report:
    """What ``migrate`` did (or, with ``dry_run``, would do)."""

    moves: list[Move] = field(default_factory=list)
    merged: list[Path] = field(default_factory=list)      # targets that combined several files
    backup: Path | None = None

    def __str__(self) -> str:
        if not self.moves:
            return "nothing to migrate: no results file is keyed by an interpreter path"
        lines = [f"{m.source.name} -> {m.target.name}" for m in self.moves]
        lines += [f"merged into {t.name} (newest row per benchmark wins; older rows kept in the backup)"
                  for t in self.merged]
        if self.backup:
            lines.append(f"backup of every original: {self.backup}")
        return "\n".join(lines)


def current_python() -> str:
    """``X.Y`` of the running interpreter (pyproject pins 3.11, so every recorded result was made under it)."""
    return "%d.%d" % sys.version_info[:2]


def is_path_keyed(data: dict) -> bool:
    """True for a results file of asv's ``existing`` environment, whose ``python`` is an interpreter path."""
    python = str(data.get("python", ""))
    return str(data.get("env_name", "")).startswith("existing-py") and os.path.isabs(python)


def _results_files(results_dir: Path) -> list[Path]:
    return sorted(p for p in results_dir.glob("*/*.json") if p.name != "machine.json")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())   # asv writes bare NaN tokens; Python's json reads them


def path_keyed_files(results_dir: str | os.PathLike) -> list[Path]:
    """Results files under ``results_dir`` that still carry a path-keyed environment."""
    return [p for p in _results_files(Path(results_dir)) if is_path_keyed(_load(p))]


def plan(results_dir: str | os.PathLike, python: str | None = None) -> list[Move]:
    """The moves ``migrate`` would make, without touching anything.

    Args:
        results_dir: asv's results directory.
        python: the ``X.Y`` the files were recorded under; None uses the running interpreter's.

    Returns:
        one Move per path-keyed results file: its path, the stable-keyed target, and its old env name and python.
    """
    env_name = stable_env_name(python or current_python())
    moves = []
    for path in path_keyed_files(results_dir):
        data = _load(path)
        target = path.with_name(f"{data['commit_hash'][:8]}-{env_name}.json")
        moves.append(Move(path, target, data["env_name"], data["python"]))
    return moves


def _rekeyed(data: dict, env_name: str, python: str) -> dict:
    out = dict(data)
    out["env_name"], out["python"] = env_name, python
    out["params"] = {**data["params"], "python": python}
    return out


def _started_at(data: dict, name: str) -> float:
    row = data["results"][name]
    col = data["result_columns"].index("started_at")
    return (row[col] if len(row) > col and row[col] is not None else 0)


def _merge(parts: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """Merge (results, stderr sidecar) pairs of one commit: per benchmark, the newest-started row wins."""
    columns = parts[0][0]["result_columns"]
    if any(p["result_columns"] != columns for p, _ in parts):
        raise MigrationError("files of one commit have different result_columns; merge them by hand")
    merged, stderr = dict(parts[0][0]), {}
    merged["results"], merged["durations"] = {}, {}
    for data, side in sorted(parts, key=lambda p: p[0].get("date") or 0):
        merged["date"] = max(merged.get("date") or 0, data.get("date") or 0)
        merged["durations"].update(data.get("durations", {}))
        for name in data["results"]:
            if name not in merged["results"] or _started_at(data, name) >= _started_at(merged, name):
                merged["results"][name] = data["results"][name]
                if name in side:
                    stderr[name] = side[name]
                else:
                    stderr.pop(name, None)
    return merged, stderr


def _same(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN (asv's "skipped")."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _verify(original: dict, written: dict, env_name: str, python: str) -> None:
    for name, row in original["results"].items():
        kept = written["results"].get(name)
        if kept is None:
            raise MigrationError(f"benchmark {name} of commit {original['commit_hash'][:8]} is missing after migration")
        if not _same(kept, row) and _started_at(written, name) < _started_at(original, name):
            raise MigrationError(f"benchmark {name} of commit {original['commit_hash'][:8]} lost its newest row")
    expect = _rekeyed(original, env_name, python)
    for key in set(expect) - {"results", "durations", "date"}:
        if not _same(expect[key], written.get(key)):
            raise MigrationError(f"field {key!r} of commit {original['commit_hash'][:8]} differs between the files "
                                 f"being merged ({expect[key]!r} vs {written.get(key)!r}); merge them by hand")


def migrate(results_dir: str | os.PathLike, python: str | None = None, backup_root: str | os.PathLike | None = None,
            dry_run: bool = False) -> Report:
    """Rewrite every path-keyed results file (and stderr sidecar) under ``results_dir`` to the stable key.

    ``python`` is the ``X.Y`` the files were recorded under (default: the running interpreter's). Backups
    go to ``backup_root`` (default ``<results_dir>/../backup``). Idempotent: a second run finds nothing.

    Args:
        results_dir: asv's results directory.
        python: the ``X.Y`` the files were recorded under; None uses the running interpreter's.
        backup_root: where the timestamped backup folder goes; None is ``<results_dir>/../backup``.
        dry_run: only plan the moves; nothing is written.

    Returns:
        the Report: the moves, the targets that merged several files, and the backup folder (None on a dry
        run or when nothing moved).
    """
    results_dir = Path(results_dir).resolve()
    python = python or current_python()
    env_name = stable_env_name(python)
    stderr_dir = results_dir.parent / "stderr"
    report = Report(plan(results_dir, python))
    if dry_run or not report.moves:
        return report

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = Path(backup_root or results_dir.parent / "backup") / stamp
    by_target: dict[Path, list[Path]] = {}
    for move in report.moves:
        by_target.setdefault(move.target, []).append(move.source)
    touched = [p for t, sources in by_target.items() for p in ([t] if t.exists() else []) + sources]
    log = {"python": python, "env_name": env_name, "moves": [], "originals": {}}
    for path in touched:
        side = stderr_dir / path.relative_to(results_dir)
        for src, root, kind in ((path, results_dir, "results"), (side, stderr_dir, "stderr")):
            if src.exists():
                dest = backup / kind / src.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                log["originals"][f"{kind}/{src.relative_to(root)}"] = hashlib.sha256(src.read_bytes()).hexdigest()
    log["moves"] = [{"from": m.source.name, "to": m.target.name, "machine": m.source.parent.name,
                     "old_env_name": m.old_env_name, "old_python": m.old_python} for m in report.moves]
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "MIGRATION.json").write_text(json.dumps(log, indent=1) + "\n")
    report.backup = backup

    staged = []   # everything is merged and checked before the first file is written
    for target, sources in by_target.items():
        paths = ([target] if target.exists() else []) + sources
        sides = [stderr_dir / p.relative_to(results_dir) for p in paths]
        parts = [(_rekeyed(_load(p), env_name, python) if p in sources else _load(p),
                  _load(s) if s.exists() else {}) for p, s in zip(paths, sides)]
        data, stderr = parts[0] if len(parts) == 1 else _merge(parts)
        if len(parts) > 1:
            report.merged.append(target)
        text = json.dumps(data)
        for p in paths:
            _verify(_load(backup / "results" / p.relative_to(results_dir)), json.loads(text), env_name, python)
        keep_stderr = bool(stderr) or any(s.exists() for s in sides)
        staged.append((target, text, stderr if keep_stderr else None, sources))
    for target, text, stderr, sources in staged:
        target.write_text(text)
        if not _same(_load(target), json.loads(text)):
            raise MigrationError(f"{target} does not read back as written; the originals are in {backup}")
        side_target = stderr_dir / target.relative_to(results_dir)
        if stderr is not None:
            side_target.parent.mkdir(parents=True, exist_ok=True)
            side_target.write_text(json.dumps(stderr, indent=1, sort_keys=True))
        for p in sources:
            p.unlink()
            side = stderr_dir / p.relative_to(results_dir)
            if side.exists():
                side.unlink()
    return report
