"""The per-commit record of the test suite: what the README's test command found, commit by commit.

A pytest run of the whole default suite (``pytest -q`` with the ``testpaths`` and ``-m 'not slow'`` of
pyproject, no ``-k``, no paths) on a clean checkout is the project's test result for that commit.
``tests/conftest.py`` collects every test's outcome and, when the run completed (green, or red with
test failures; an interrupted run or a collection error records nothing), appends it with
``append_run`` to ``.asv/tests/<sha>.json``. Earlier runs of the same commit are kept; readers use
the latest (``latest_run``).

One record file (format ``RECORD_VERSION``)::

    {"version": 1, "commit": "<sha>", "runs": [
        {"started": "2025-...Z", "duration_s": 241.3, "exitstatus": 0, "green": true,
         "coverage": true, "python": "3.11.9", "pytest": "9.2.0", "args": ["-q"],
         "counts": {"passed": 250, "failed": 0, "error": 0, "skipped": 2, "xfailed": 0, "xpassed": 0,
                    "not run": 0, "total": 252, "deselected": 9},
         "outcomes": {"tests/harness/test_cli.py::test_roadmap_prints_every_criterion": "passed", ...}}]}

``total`` is the number of selected tests; each has exactly one outcome (``not run`` when ``-x``
stopped the session before it). The asv benchmarks in ``benchmarks/bench_quality.py`` read the
latest run of the benchmarked commit, so the criteria bound to them (``harness.roadmap.criteria``) rest on
what pytest reported, never on what a benchmark re-runs.

Named groups of tests (``harness/roadmap/test_groups.toml``) let a criterion rest on specific tests having
passed in that run, e.g. the end-to-end tests for QA.e2e_testing (``group_passed_fraction``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.data_files import read_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORD_DIR = REPO_ROOT / ".asv" / "tests"
RECORD_VERSION = 1
GROUPS_PATH = Path(__file__).with_name("test_groups.toml")

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run")
NOT_PASSED = ("failed", "error")  # outcomes that make a run red
NO_RUN_REASON = "no test run of the whole default suite recorded for this commit"


class TestRunError(ValueError):
    """A test record or group file that cannot be read as asked; the message names the file and the fix."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True)
class TestRun:
    """One recorded run of the whole default suite: its counts, per-test outcomes and versions.

    Attributes:
        commit: the commit the run measured.
        started: ISO-8601 UTC start time.
        duration_s: wall time of the session in seconds.
        exitstatus: pytest's exit status (0 green, 1 some test failed).
        coverage: True when pytest-cov measured this run (its report belongs to the commit).
        python: the interpreter version, e.g. ``3.11.9``.
        pytest: the pytest version.
        counts: outcome -> number of tests, plus ``total`` (selected) and ``deselected``.
        outcomes: test node id -> outcome (one of ``OUTCOMES``).
    """

    __test__ = False

    commit: str
    started: str
    duration_s: float
    exitstatus: int
    coverage: bool
    python: str
    pytest: str
    counts: Mapping[str, int]
    outcomes: Mapping[str, str]

    @property
    def green(self) -> bool:
        """True when every selected test ran and none failed or errored."""
        return self.exitstatus == 0 and self.failed == 0 and self.counts.get("not run", 0) == 0

    @property
    def total(self) -> int:
        """Selected tests (deselected ones excluded)."""
        return int(self.counts.get("total", 0))

    @property
    def passed(self) -> int:
        """Tests whose outcome is ``passed``."""
        return int(self.counts.get("passed", 0))

    @property
    def failed(self) -> int:
        """Tests that failed or errored (in setup, call or teardown)."""
        return sum(int(self.counts.get(o, 0)) for o in NOT_PASSED)

    def to_json(self) -> dict[str, Any]:
        """The run as the record file stores it (without the commit, which the file holds once)."""
        return {"started": self.started, "duration_s": self.duration_s, "exitstatus": self.exitstatus,
                "green": self.green, "coverage": self.coverage, "python": self.python, "pytest": self.pytest,
                "counts": dict(self.counts), "outcomes": dict(self.outcomes)}


def count_outcomes(outcomes: Mapping[str, str], deselected: int = 0) -> dict[str, int]:
    """Counts per outcome of ``outcomes`` (node id -> outcome), with ``total`` and ``deselected``.

    Args:
        outcomes: one outcome per selected test, each one of ``OUTCOMES``.
        deselected: tests deselected by ``-m``/``-k`` (not part of the total).

    Returns:
        {outcome: n for every outcome} plus ``total`` and ``deselected``.

    Raises:
        TestRunError: an outcome outside ``OUTCOMES``.
    """
    unknown = sorted({o for o in outcomes.values() if o not in OUTCOMES})
    if unknown:
        raise TestRunError(f"unknown test outcomes {unknown}; expected one of {list(OUTCOMES)}")
    counts = {o: sum(v == o for v in outcomes.values()) for o in OUTCOMES}
    counts["total"] = len(outcomes)
    counts["deselected"] = int(deselected)
    return counts


def record_path(commit: str, record_dir: str | os.PathLike = RECORD_DIR) -> Path:
    """Where the record of ``commit`` lives.

    Args:
        commit: the full commit hash.
        record_dir: the directory of the records (``.asv/tests`` of the checkout by default).

    Returns:
        ``<record_dir>/<commit>.json``.
    """
    return Path(record_dir) / f"{commit}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TestRunError(f"cannot read test record {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TestRunError(f"test record {path} is corrupt ({exc.msg} at line {exc.lineno}); delete it and run "
                           f"the README's test command again") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("runs"), list):
        raise TestRunError(f"test record {path} is not a version-{RECORD_VERSION} record with a list of runs; "
                           f"delete it and run the README's test command again")
    return data


def append_run(run: TestRun, record_dir: str | os.PathLike = RECORD_DIR) -> Path:
    """Add ``run`` to its commit's record file, keeping the earlier runs.

    The file is replaced atomically (written beside it, then renamed), so a reader never sees half a
    record. An unreadable existing record is kept as ``<sha>.json.corrupt`` rather than overwritten.

    Args:
        run: the finished run of the whole default suite.
        record_dir: the directory of the records.

    Returns:
        the record file written.
    """
    path = record_path(run.commit, record_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": RECORD_VERSION, "commit": run.commit, "runs": []}
    if path.exists():
        try:
            data = _read(path)
        except TestRunError:
            path.replace(path.with_name(path.name + ".corrupt"))
    data["runs"].append(run.to_json())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def latest_run(commit: str, record_dir: str | os.PathLike = RECORD_DIR) -> TestRun | None:
    """The latest recorded run of the whole default suite at ``commit``.

    Args:
        commit: the full commit hash.
        record_dir: the directory of the records.

    Returns:
        the run, or None when the commit has no record.

    Raises:
        TestRunError: the record exists but is unreadable or malformed.
    """
    path = record_path(commit, record_dir)
    if not path.exists():
        return None
    data = _read(path)
    if not data["runs"]:
        return None
    raw = data["runs"][-1]
    try:
        return TestRun(commit=data["commit"], started=raw["started"], duration_s=float(raw["duration_s"]),
                       exitstatus=int(raw["exitstatus"]), coverage=bool(raw["coverage"]), python=raw["python"],
                       pytest=raw["pytest"], counts=dict(raw["counts"]), outcomes=dict(raw["outcomes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TestRunError(f"test record {path}: the latest run lacks {exc}; delete the file and run the README's "
                           f"test command again") from None


# ------------------------------------------------------------------ named groups of tests
def selects(pattern: str, nodeid: str) -> bool:
    """True when the test ``nodeid`` is named by ``pattern`` (a file, a test, a class or a parametrized test).

    Args:
        pattern: a test file, ``path::name`` or a class, as a group or a task names it.
        nodeid: a recorded pytest node id.

    Returns:
        True when ``nodeid`` equals ``pattern`` or starts with it followed by ``::`` or ``[``.
    """
    return nodeid == pattern or nodeid.startswith((pattern + "::", pattern + "["))


@dataclass(frozen=True)
class TestGroup:
    """Tests named by node id or prefix whose outcome in the recorded run backs a criterion.

    A pattern is a file (``tests/harness/test_end_to_end.py``), a test (``path::name``) or a class;
    it selects every recorded node id equal to it or starting with it followed by ``::`` or ``[``.
    """

    __test__ = False

    name: str
    description: str
    tests: tuple[str, ...]

    def selects(self, nodeid: str) -> bool:
        """True when ``nodeid`` is one of this group's tests."""
        return any(selects(p, nodeid) for p in self.tests)


def load_groups(path: str | os.PathLike = GROUPS_PATH) -> dict[str, TestGroup]:
    """The named test groups of a TOML file, in file order.

    Args:
        path: the groups file (``harness/roadmap/test_groups.toml`` by default).

    Returns:
        {group name: TestGroup}.

    Raises:
        TestRunError: a missing file, bad TOML, or a group without a description or tests.
    """
    path = Path(path)
    data = read_toml(path, TestRunError, "test groups file")
    groups = {}
    for name, entry in data.items():
        tests = entry.get("tests") if isinstance(entry, dict) else None
        if not (isinstance(tests, list) and tests and all(isinstance(t, str) and t for t in tests)
                and isinstance(entry.get("description"), str)):
            raise TestRunError(f"test group [{name}] in {path} needs a description string and a non-empty list "
                               f"of test node ids in `tests`")
        groups[name] = TestGroup(name, entry["description"], tuple(tests))
    return groups


def group_passed_fraction(run: TestRun, group: TestGroup) -> float:
    """Share of a group's tests that passed in a recorded run.

    A named test that was deselected, renamed or deleted is not in the run, so it cannot have
    passed: a group that matches nothing scores 0, never a vacuous 1.

    Args:
        run: the recorded run.
        group: the named tests.

    Returns:
        passed / selected among the group's tests, in [0, 1]; 0.0 when none of them was in the run.
    """
    mine = [outcome for nodeid, outcome in run.outcomes.items() if group.selects(nodeid)]
    return sum(o == "passed" for o in mine) / len(mine) if mine else 0.0


def unmatched_patterns(run: TestRun, groups: Sequence[TestGroup]) -> list[str]:
    """Group patterns that select no test of a run (a renamed, deleted or deselected test).

    Args:
        run: the recorded run.
        groups: the groups whose patterns to look for.

    Returns:
        ``"group: pattern"`` for each pattern that matches nothing, in group order.
    """
    return [f"{g.name}: {p}" for g in groups for p in g.tests
            if not any(selects(p, n) for n in run.outcomes)]
