"""The recorded history as verdicts: where the asv record lives (``Paths``, from the asv config), and the
verdicts of every recorded commit with the regressions between them (``History``, ``load_history``).

The reports (``harness.reports``), the progress tracker (``harness.qa.progress``) and the CLI all start from
``load_history``; it reads asv's files (``harness.roadmap.results``), evaluates them (``harness.roadmap.validate``)
and compares commits (``harness.roadmap.gate``). It writes nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.roadmap.gate import Regression, regressions
from harness.roadmap.results import CommitResults, ResultsError, load_benchmarks, load_machine
from harness.roadmap.validate import CriterionResult, evaluate_history, measured_here


@dataclass(frozen=True)
class History:
    """Verdicts for consecutive commits of one machine, oldest first.

    ``baseline`` is the index of the commit the newest one is compared with (``--baseline REF``); None
    means the one before the newest.
    """

    machine: str
    commits: tuple[str, ...]
    dates: tuple[int, ...]
    verdicts: tuple[dict[str, CriterionResult], ...]
    baseline: int | None = None

    @property
    def latest(self) -> dict[str, CriterionResult]:
        """Verdicts of the newest commit, keyed by criterion id."""
        return self.verdicts[-1]

    @property
    def baseline_commit(self) -> str | None:
        """The commit the newest one is compared with; None when there is only one commit."""
        index = self.baseline_index
        return None if index is None else self.commits[index]

    @property
    def baseline_index(self) -> int | None:
        """Index of the baseline commit in ``commits``; None when there is nothing to compare with."""
        if self.baseline is not None:
            return self.baseline
        return len(self.commits) - 2 if len(self.commits) > 1 else None

    def regressions_of(self, index: int) -> list[Regression]:
        """Regressions of commit ``index`` against the baseline (``--baseline``) or the commit before it."""
        base = self.baseline if self.baseline is not None else index - 1
        return [] if base < 0 or base == index else regressions(self.verdicts[base], self.verdicts[index])

    def latest_regressions(self) -> list[Regression]:
        """Regressions of the newest commit against the baseline; [] with a single commit."""
        return self.regressions_of(len(self.commits) - 1)

    def all_regressions(self) -> list[Regression]:
        """Regressions between every pair of consecutive commits, oldest pair first."""
        return [r for a, b in zip(self.verdicts, self.verdicts[1:]) for r in regressions(a, b)]


@dataclass(frozen=True)
class Paths:
    """Where the harness reads and writes, all resolved from the asv config's location.

    Attributes:
        root: the directory holding the asv config; asv and git run there.
        config: the asv config file (asv.conf.json).
        results_dir: asv's results directory (``--results-dir`` or the config's ``results_dir``).
        html_dir: where ``asv publish`` writes and where roadmap.html goes.
    """

    root: Path
    config: Path
    results_dir: Path
    html_dir: Path


def paths_for(args: argparse.Namespace) -> Paths:
    """Resolve the harness paths from the parsed ``--config``/``--results-dir`` options.

    A missing config is allowed (asv's defaults apply) so that ``validate`` and ``report`` work on a
    copied results directory; a config that exists but is not JSON is a ResultsError.

    Args:
        args: parsed options with ``config`` and, optionally, ``results_dir``.

    Returns:
        the absolute repository root (the config's folder), config, results and html folders; the last two
        from the config's ``results_dir``/``html_dir`` (asv's defaults under ``.asv``), ``--results-dir`` winning.
    """
    config = Path(args.config).resolve()
    root = config.parent
    conf = {}
    if config.exists():
        try:
            conf = json.loads(config.read_text())
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{config} is not valid JSON ({exc}); fix it before running the harness") from None
    results_dir = Path(args.results_dir) if getattr(args, "results_dir", None) else root / conf.get("results_dir",
                                                                                                    ".asv/results")
    return Paths(root, config, results_dir.resolve(), (root / conf.get("html_dir", ".asv/html")).resolve())


def load_history(paths: Paths, machine: str, upto: str | None = None, baseline: str | None = None) -> History:
    """Verdicts for every recorded commit of ``machine`` up to ``upto`` (a hash prefix; default: all),
    compared with ``baseline`` (a hash prefix or git ref of a recorded commit; default: the previous one).

    Args:
        paths: the harness paths (``paths_for``).
        machine: the asv machine name.
        upto: hash prefix of the last commit to evaluate; None evaluates up to the newest.
        baseline: the commit the evaluated one is compared with, recorded no later than it; None compares
            with the previous recorded commit.

    Returns:
        the History: commits oldest first with their dates and verdicts, and the baseline's index. Raises
        ResultsError when there are no results or a commit does not resolve to exactly one recorded commit.
    """
    commits = load_machine(paths.results_dir, machine)
    if not commits:
        raise ResultsError(f"{paths.results_dir / machine} holds no results files; run `python -m harness run`")
    last = len(commits) - 1 if upto is None else _recorded_index(commits, upto, machine, "--commit")
    base = None if baseline is None else _baseline_index(paths, commits, baseline, machine)
    if base is not None and base > last:
        raise ResultsError(f"--baseline {baseline!r} ({commits[base].commit_hash[:8]}) was recorded after the "
                           f"evaluated commit {commits[last].commit_hash[:8]}; compare with a commit up to the "
                           f"evaluated one")
    commits = commits[: last + 1]
    benchmarks = load_benchmarks(paths.results_dir)
    verdicts = evaluate_history(commits, benchmarks)
    return History(machine, tuple(c.commit_hash for c in commits), tuple(c.date for c in commits),
                          tuple(verdicts), base)


def _recorded_index(commits: Sequence[CommitResults], prefix: str, machine: str, option: str,
                    given: str | None = None) -> int:
    """Index of the one recorded commit whose hash starts with ``prefix``; ResultsError listing them if none."""
    recorded = ", ".join(c.commit_hash[:8] for c in commits)
    match = [i for i, c in enumerate(commits) if c.commit_hash.startswith(prefix.lower())]
    shown = given if given is not None and given != prefix else None
    name = f"{given!r} ({prefix[:8]})" if shown else repr(prefix)
    if not match:
        raise ResultsError(f"{option}: no results for commit {name} on {machine}; recorded: {recorded}")
    if len({commits[i].commit_hash for i in match}) > 1:
        several = ", ".join(commits[i].commit_hash[:12] for i in match)
        raise ResultsError(f"{option}: {name} matches several recorded commits ({several}); give more of the hash")
    return match[-1]


def _baseline_index(paths: Paths, commits: Sequence[CommitResults], ref: str, machine: str) -> int:
    """Index of the ``--baseline`` commit: a recorded hash prefix, else a git ref resolved in the repository."""
    if re.fullmatch(r"[0-9a-fA-F]{4,40}", ref) and any(c.commit_hash.startswith(ref.lower()) for c in commits):
        return _recorded_index(commits, ref, machine, "--baseline")
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=paths.root,
                          capture_output=True, text=True)
    if proc.returncode:
        raise ResultsError(f"--baseline {ref!r} is neither a recorded commit nor a git ref that resolves in "
                           f"{paths.root}; recorded: {', '.join(c.commit_hash[:8] for c in commits)}")
    return _recorded_index(commits, proc.stdout.strip(), machine, "--baseline", ref)


def nothing_measured(history: History, index: int = -1) -> str | None:
    """The error when commit ``index`` of ``history`` measured no value at all, else None.

    Every check then lacks a number from that commit's own results: each is NaN (skipped), null (failed),
    names a benchmark that benchmarks.json does not list, or was not run (a stale value does not count).

    Args:
        history: the evaluated history.
        index: which commit of ``history``; -1 is the newest.

    Returns:
        a message naming the commit and the fix, or None when the commit measured at least one value.
    """
    verdicts = history.verdicts[index]
    if measured_here(verdicts):
        return None
    return (f"commit {history.commits[index][:8]} has no measured value at all: every benchmark a criterion reads "
            f"was skipped (NaN), failed (null), is unknown to benchmarks.json or was not run at this commit, so "
            f"nothing can pass. Run the benchmarks (`python -m harness run`; full-tier classes named *Full need "
            f"--full) and see the FAILED-TO-RUN / NOT MEASURED reasons above")
