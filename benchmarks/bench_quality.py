"""Project quality numbers: documentation, the recorded test run, coverage, troubleshooting, progress, the tools.

Criteria: P0.doc_standards, QA.doc_completeness (docs); P1.synthetic_tests, P0.test_framework,
QA.e2e_testing, QA.automated_checks, QA.test_frameworks, QA.api_consistency, P0.jupyter_workflow (the
recorded test run); QA.coverage; QA.troubleshooting_coverage; QA.progress_accuracy (task statuses
against the recorded test run); P0.dev_tools (the pinned stack and ``pip check``).

The test suite is not run here: running it inside a benchmark would take minutes, and the result
belongs to the README's test command. A run of the whole default suite on a clean checkout records
every test's outcome in ``.asv/tests/<commit>.json`` (``harness.roadmap.testrun``, written by
``tests/conftest.py``) and, when green, pytest-cov's report in ``.asv/coverage/<commit>.json``. The
benchmarks below read the record of the benchmarked commit and raise ``NotImplementedError`` in
``setup`` when there is none, so asv records NaN and prints the reason, which the harness keeps beside
the results and shows in the report. That reason starts with ``harness.roadmap.results.AWAITING``: the tests of
the commit have not been recorded yet, so validation shows the latest earlier value, marked stale, and
the criterion is NOT MEASURED only when no earlier commit has one.
"""

from __future__ import annotations

import importlib.resources
import tomllib

from harness.roadmap.results import AWAITING

from . import common

COVERAGE_DIR = common.REPO_ROOT / ".asv" / "coverage"
RECORD_DIR = common.REPO_ROOT / ".asv" / "tests"


def _group_names() -> tuple[str, ...]:
    """The test-group names, the ``group`` parameter values needed at discovery: from the installed harness
    package's data file (``harness/roadmap/``, or ``harness/`` before issue 12 moved it), else the checkout's
    (an environment of a commit older than the file), read without importing harness.roadmap.testrun so that
    discovery works in any of them."""
    for package in ("harness.roadmap", "harness"):
        try:
            installed = importlib.resources.files(package).joinpath("test_groups.toml")
        except (ModuleNotFoundError, TypeError):  # no such package at the installed commit
            continue
        if installed.is_file():
            return tuple(tomllib.loads(installed.read_text()))
    return tuple(tomllib.loads((common.REPO_ROOT / "harness" / "roadmap" / "test_groups.toml").read_text()))


GROUPS = _group_names()


def _recorded_run():
    """The latest recorded run of the whole default suite at the benchmarked commit, else NotImplementedError."""
    from harness.roadmap import testrun

    commit = common.benchmarked_commit()
    run = testrun.latest_run(commit, RECORD_DIR)
    if run is None:
        raise NotImplementedError(f"{AWAITING}{testrun.NO_RUN_REASON} ({commit[:8]}); run the README's test "
                                  f"command on a clean checkout, then the benchmarks")
    return run


def _require_green_coverage() -> None:
    """setup of track_test_coverage: a green, coverage-measured run of this commit, else the true reason."""
    from harness.roadmap import testrun

    commit = common.benchmarked_commit()
    if (COVERAGE_DIR / f"{commit}.json").exists():
        return
    run = testrun.latest_run(commit, RECORD_DIR)
    if run is not None and not run.green:
        raise NotImplementedError(f"no green test run recorded for this commit ({commit[:8]}): the latest run has "
                                  f"{run.failed} failed and {run.counts.get('not run', 0)} not run of {run.total}")
    if run is not None and not run.coverage:
        raise NotImplementedError(f"{AWAITING}no green test run recorded for this commit ({commit[:8]}) under "
                                  f"coverage: the recorded run used --no-cov")
    raise NotImplementedError(f"{AWAITING}no green test run recorded for this commit ({commit[:8]}); run the "
                              f"README's test command on a clean checkout, then the benchmarks")


def _progress_disagreement() -> float:
    """QA.progress_accuracy's value from the recorded run of the benchmarked commit, else NotImplementedError
    with the reason (raised in setup, so asv prints it and the report shows it)."""
    from harness.qa.tasks import load_tasks
    from harness.qa.task_status import progress_disagreement_of
    from harness.roadmap import testrun

    try:
        value = progress_disagreement_of(common.benchmarked_commit(), load_tasks(), RECORD_DIR)
    except LookupError as e:
        awaiting = AWAITING if str(e).startswith(testrun.NO_RUN_REASON) else ""
        raise NotImplementedError(f"{awaiting}{e}") from None
    if value is None:
        raise NotImplementedError("no task's named tests are in the recorded test run of this commit")
    return value


class Quality:
    """Docstring completeness (harness.qa.docs_check), line coverage of the fast suite, troubleshooting."""

    version = "2"  # 2: coverage skips in setup with its reason

    def track_doc_completeness(self):
        """P0.doc_standards, QA.doc_completeness: share of passed documentation checks over
        tf_impl/, reference/ and harness/ (``harness.qa.docs_check.docs_score``)."""
        from harness.qa.docs_check import docs_score

        return docs_score()[0]

    track_doc_completeness.unit = "fraction"
    track_doc_completeness.pretty_name = "Documentation completeness"

    def track_test_coverage(self):
        """QA.coverage: line coverage of harness/, tf_impl/, reference/ by the fast tests, from
        ``.asv/coverage/<commit>.json``; skipped (with the reason) when no green full test run wrote one."""
        from harness.qa.docs_check import coverage_percent

        return coverage_percent(COVERAGE_DIR / f"{common.benchmarked_commit()}.json") / 100.0

    track_test_coverage.setup = _require_green_coverage
    track_test_coverage.unit = "fraction"
    track_test_coverage.pretty_name = "Test coverage (fast suite)"

    def track_troubleshooting_coverage(self):
        """QA.troubleshooting_coverage: share of the spec's common issues (its error messages, symptoms and
        named issues, tests/qa/fixtures/spec_common_issues.toml) and of held-out real failures (captured
        after the knowledge base was frozen, never used to write a pattern) that ``harness.qa.diagnosis``
        ranks as their expected issue first (``harness.qa.diagnosis_coverage.troubleshooting_coverage``).
        The dev captures the patterns were written from do not count."""
        from harness.qa.diagnosis_coverage import troubleshooting_coverage

        # The captured logs are data of the checkout, not of the installed package (asv's virtualenv
        # mode installs harness/ without tests/), so read them from beside this suite.
        return troubleshooting_coverage(str(common.REPO_ROOT / "tests" / "qa" / "fixtures"))

    track_troubleshooting_coverage.version = "spec-and-held-out-1"
    track_troubleshooting_coverage.unit = "fraction"
    track_troubleshooting_coverage.pretty_name = "Troubleshooting coverage: spec common issues and held-out failures"

    def track_progress_disagreement(self):
        """QA.progress_accuracy: share of the tasks of harness/qa/tasks.toml that the recorded test run of this
        commit covers (their named tests ran) whose hand-set status disagrees with the status derived from
        those tests (``harness.qa.task_status``); skipped, with the reason, when no run of the whole default
        suite is recorded for this commit or it covers no task."""
        return _progress_disagreement()

    track_progress_disagreement.setup = _progress_disagreement
    track_progress_disagreement.version = "tests-evidence-1"
    track_progress_disagreement.unit = "fraction"
    track_progress_disagreement.pretty_name = "Progress tracker: hand-set task statuses contradicted by the tests"


class SuiteRun:
    """The latest recorded run of the whole default test suite at the benchmarked commit.

    Every number comes from what pytest reported (``.asv/tests/<commit>.json``); nothing is re-run.
    """

    version = "1"

    def setup(self, *params):
        self.run = _recorded_run()

    def track_tests_passed(self):
        """P1.synthetic_tests, QA.automated_checks: share of the selected tests that passed (passed / total);
        1.0 only when none failed, errored, was skipped or was left unrun."""
        return self.run.passed / self.run.total if self.run.total else 0.0

    track_tests_passed.unit = "fraction"
    track_tests_passed.pretty_name = "Tests passed / selected, recorded default-suite run"

    def track_tests_failed(self):
        """P1.synthetic_tests, QA.automated_checks: tests that failed or errored in the recorded run."""
        return self.run.failed

    track_tests_failed.unit = "tests"
    track_tests_failed.pretty_name = "Tests failed or errored, recorded default-suite run"

    def track_tests_total(self):
        """P0.test_framework, QA.test_frameworks: tests pytest collected and selected in the recorded run of
        the whole default suite (0 would mean the framework found nothing to run)."""
        return self.run.total

    track_tests_total.unit = "tests"
    track_tests_total.pretty_name = "Tests selected, recorded default-suite run"

    def track_group_passed(self, group):
        """QA.e2e_testing (group=e2e), QA.api_consistency (group=api): share of the tests named in
        harness/roadmap/test_groups.toml that passed in the recorded run; 0 when none of them ran."""
        from harness.roadmap import testrun

        return testrun.group_passed_fraction(self.run, testrun.load_groups()[group])

    track_group_passed.params = [GROUPS]
    track_group_passed.param_names = ["group"]
    track_group_passed.unit = "fraction"
    track_group_passed.pretty_name = "Named tests passed, recorded default-suite run"


class DevTools:
    """The pinned tool stack on the interpreter that runs the benchmarks (``harness.qa.devtools``)."""

    version = "1"
    timeout = 180

    def setup(self):
        from harness.qa.devtools import check_pins, pip_check

        self.pins = check_pins(common.REPO_ROOT / "pyproject.toml")
        self.pip_problems = pip_check()
        for problem in [c.problem for c in self.pins if c.problem] + self.pip_problems:
            print(f"dev tools: {problem}")  # kept by the harness as this benchmark's output

    def track_pinned_tools_ok(self):
        """P0.dev_tools, QA.automated_checks: share of pyproject's pinned requirements installed inside their
        pinned range whose top-level module imports."""
        return sum(c.ok for c in self.pins) / len(self.pins)

    track_pinned_tools_ok.unit = "fraction"
    track_pinned_tools_ok.pretty_name = "Pinned tools importable in range"

    def track_pip_check_problems(self):
        """P0.dev_tools, QA.automated_checks: problems reported by ``python -m pip check`` (0 = consistent)."""
        return len(self.pip_problems)

    track_pip_check_problems.unit = "problems"
    track_pip_check_problems.pretty_name = "pip check problems"
