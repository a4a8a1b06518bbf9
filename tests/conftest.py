"""Suite-wide hooks: record what a whole default run of the suite found, for the commit it measured.

Only a run of the whole default suite (the README's test command: ``testpaths``, ``-m 'not slow'``,
no ``-k``) on a clean checkout (no modified tracked file, no untracked file outside .gitignore)
measures "the tests of commit X" (changes under .asv/, the harness' own records, do not count).
When such a run completes, two records are written:

* ``.asv/tests/<sha>.json`` (``harness.roadmap.testrun``): counts, every test's outcome, durations and
  versions; green and red runs alike, so a red suite is a FAIL of the criteria that read it
  (``benchmarks/bench_quality.py``), not a missing value. An interrupted run or a collection error
  records nothing.
* ``.asv/coverage/<sha>.json``: pytest-cov's report (``.asv/coverage/last-run.json``, configured in
  pyproject's addopts), copied only after a green run that pytest-cov measured in this session;
  a ``--no-cov`` run leaves the previous report alone rather than attributing it to this commit.

A partial run, or uncommitted changes, leave both records alone, so the criteria are NOT MEASURED
rather than wrong.
"""

from __future__ import annotations

import datetime
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.roadmap import testrun

ROOT = Path(__file__).resolve().parents[1]
COVERAGE_DIR = ROOT / ".asv" / "coverage"
RECORD_DIR = ROOT / ".asv" / "tests"
_RECORDED_EXIT = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)


def _git(*argv: str) -> str | None:
    """git's output (not stripped: porcelain status lines start with a space), None when git fails."""
    try:
        return subprocess.check_output(["git", *argv], cwd=ROOT, text=True, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return None


def _head() -> str | None:
    out = _git("rev-parse", "HEAD")
    return out.strip() if out else None


def _clean_checkout() -> bool:
    """No tracked file modified, and no untracked file (outside .gitignore) that the suite could pick up.

    Files under .asv/ are the harness' own records: the main job adds a results file and rewrites
    ``benchmarks.json`` before they are committed. The suite never reads them (its tests use fixtures),
    so they do not change what the tests of the commit find.
    """
    status = _git("status", "--porcelain", "--untracked-files=all")
    if status is None:
        return False
    return all(line[3:].startswith(".asv/") for line in status.splitlines())


def _is_whole_default_run(config: pytest.Config) -> bool:
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and config.option.markexpr == "not slow" and not config.option.keyword)


class _Outcomes:
    """Collects one outcome per selected test from pytest's reports (setup, call and teardown)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.head = _head()
        self.clean_at_start = _clean_checkout()
        self.selected: list[str] = []
        self.deselected = 0
        self.outcome: dict[str, str] = {}

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.selected = [item.nodeid for item in items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        previous = self.outcome.get(report.nodeid)
        if previous in ("failed", "error"):
            return  # the first failure decides; a teardown after a failed call changes nothing
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            return  # a passing setup or teardown says nothing about the test itself
        if previous in ("xfailed", "xpassed", "skipped") and outcome == "passed":
            return
        self.outcome[report.nodeid] = outcome

    def outcomes(self) -> dict[str, str]:
        return {nodeid: self.outcome.get(nodeid, "not run") for nodeid in self.selected}


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Outcomes(), "harness-test-record")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus not in _RECORDED_EXIT or not _is_whole_default_run(session.config):
        return
    collector: _Outcomes = session.config.pluginmanager.get_plugin("harness-test-record")
    sha = collector.head
    if sha is None or not collector.clean_at_start or not _clean_checkout() or _head() != sha:
        return  # no commit, or the code measured is not (only) the commit's
    outcomes = collector.outcomes()
    report = COVERAGE_DIR / "last-run.json"
    coverage = report.exists() and report.stat().st_mtime >= collector.started
    run = testrun.TestRun(
        commit=sha, started=datetime.datetime.fromtimestamp(collector.started, datetime.timezone.utc).isoformat(),
        duration_s=round(time.time() - collector.started, 3), exitstatus=int(exitstatus), coverage=coverage,
        python=platform.python_version(), pytest=pytest.__version__,
        counts=testrun.count_outcomes(outcomes, collector.deselected), outcomes=outcomes)
    testrun.append_run(run, RECORD_DIR)
    if run.green and coverage:
        shutil.copyfile(report, COVERAGE_DIR / f"{sha}.json")
