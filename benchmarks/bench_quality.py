"""Project quality numbers. Criteria: P0.doc_standards, QA.doc_completeness (docs), QA.coverage,
QA.troubleshooting_coverage and QA.progress_accuracy.

Coverage is not measured here: running the test suite under coverage inside a benchmark would
take minutes. The README's test command runs under pytest-cov, and a green run of the whole default
suite on a clean checkout leaves coverage.py's JSON report at ``.asv/coverage/<commit>.json``
(``tests/conftest.py``); this benchmark reads it and is skipped (NaN, so the criterion is NOT
MEASURED) when that file is missing for the benchmarked commit.
"""

from __future__ import annotations

from asv_runner.benchmarks.mark import SkipNotImplemented

from . import common

COVERAGE_DIR = common.REPO_ROOT / ".asv" / "coverage"


class Quality:
    """Docstring completeness (harness.docs_check) and line coverage of the fast test suite."""

    def track_doc_completeness(self):
        """P0.doc_standards, QA.doc_completeness: share of passed documentation checks over
        tf_impl/, reference/ and harness/ (``harness.docs_check.docs_score``)."""
        from harness.docs_check import docs_score

        return docs_score()[0]

    track_doc_completeness.unit = "fraction"
    track_doc_completeness.pretty_name = "Documentation completeness"

    def track_test_coverage(self):
        """QA.coverage: line coverage of harness/, tf_impl/, reference/ by the fast tests, from
        ``.asv/coverage/<commit>.json``; skipped when no green full test run wrote one for this commit."""
        from harness.docs_check import coverage_percent

        path = COVERAGE_DIR / f"{common.benchmarked_commit()}.json"
        if not path.exists():
            raise SkipNotImplemented(f"no coverage report {path} for this commit; run the README's test command on a clean checkout first")
        return coverage_percent(path) / 100.0

    track_test_coverage.unit = "fraction"
    track_test_coverage.pretty_name = "Test coverage (fast suite)"

    def track_troubleshooting_coverage(self):
        """QA.troubleshooting_coverage: share of the spec's common issues (its error messages, symptoms and
        named issues, tests/qa/fixtures/spec_common_issues.toml) and of held-out real failures (captured
        after the knowledge base was frozen, never used to write a pattern) that ``harness.diagnosis``
        ranks as their expected issue first (``harness.diagnosis_coverage.troubleshooting_coverage``).
        The dev captures the patterns were written from do not count."""
        from harness.diagnosis_coverage import troubleshooting_coverage

        # The captured logs are data of the checkout, not of the installed package (asv's virtualenv
        # mode installs harness/ without tests/), so read them from beside this suite.
        return troubleshooting_coverage(str(common.REPO_ROOT / "tests" / "qa" / "fixtures"))

    track_troubleshooting_coverage.version = "spec-and-held-out-1"
    track_troubleshooting_coverage.unit = "fraction"
    track_troubleshooting_coverage.pretty_name = "Troubleshooting coverage: spec common issues and held-out failures"

    def track_progress_disagreement(self):
        """QA.progress_accuracy: share of the tasks of harness/tasks.toml that the recorded test run of this
        commit covers (their named tests ran) whose hand-set status disagrees with the status derived from
        those tests (``harness.task_status``); skipped when no run of the whole default suite is recorded
        for this commit."""
        from harness.progress import load_tasks
        from harness.task_status import progress_disagreement_of

        try:
            value = progress_disagreement_of(common.benchmarked_commit(), load_tasks(),
                                             str(common.REPO_ROOT / ".asv" / "tests"))
        except LookupError as e:
            raise SkipNotImplemented(str(e)) from None
        if value is None:
            raise SkipNotImplemented("no task's named tests are in the recorded test run")
        return value

    track_progress_disagreement.version = "tests-evidence-1"
    track_progress_disagreement.unit = "fraction"
    track_progress_disagreement.pretty_name = "Progress tracker: hand-set task statuses contradicted by the tests"
