"""The quality benchmarks read the recorded test run of the benchmarked commit, or skip with the true reason."""

import pytest

from benchmarks import bench_quality, common
from harness.roadmap import testrun

SHA = "f" * 40


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "benchmarked_commit", lambda: SHA)
    monkeypatch.setattr(bench_quality, "RECORD_DIR", tmp_path / "tests")
    monkeypatch.setattr(bench_quality, "COVERAGE_DIR", tmp_path / "coverage")
    return tmp_path / "tests"


def _record(records, coverage=True, **outcomes):
    run = testrun.TestRun(commit=SHA, started="2025-01-01T00:00:00+00:00", duration_s=2.0,
                          exitstatus=int(any(v != "passed" for v in outcomes.values())), coverage=coverage,
                          python="3.11.9", pytest="9.2.0", counts=testrun.count_outcomes(outcomes), outcomes=outcomes)
    testrun.append_run(run, records)


def test_no_record_skips_with_the_reason(records):
    with pytest.raises(NotImplementedError, match="no test run of the whole default suite recorded for this commit"):
        bench_quality.SuiteRun().setup()
    with pytest.raises(NotImplementedError, match="no green test run recorded for this commit"):
        bench_quality.Quality.track_test_coverage.setup()


def test_values_come_from_the_latest_recorded_run(records):
    e2e = "tests/harness/test_end_to_end.py::test_harness_run_records_validates_reports_and_keeps_history"
    _record(records, **{e2e: "passed", "tests/x.py::a": "failed", "tests/x.py::b": "passed", "tests/x.py::c": "error"})
    suite = bench_quality.SuiteRun()
    suite.setup("e2e")
    assert suite.track_tests_passed() == 0.5 and suite.track_tests_failed() == 2 and suite.track_tests_total() == 4
    assert suite.track_group_passed("e2e") == 1.0 and suite.track_group_passed("api") == 0.0
    # A red run has no coverage worth attributing: the skip says so.
    with pytest.raises(NotImplementedError, match="the latest run has 2 failed"):
        bench_quality.Quality.track_test_coverage.setup()


def test_green_run_without_coverage_says_so(records):
    _record(records, coverage=False, **{"tests/x.py::a": "passed"})
    with pytest.raises(NotImplementedError, match="used --no-cov"):
        bench_quality.Quality.track_test_coverage.setup()


def _tasks():
    from harness.qa.tasks import parse_tasks

    def task(tid, status, tests=()):
        return {"id": tid, "title": f"task {tid}", "phase": "phase_1", "status": status, "priority": "medium",
                "depends_on": [], "tests": list(tests)}

    return parse_tasks({"schema_version": 1, "task": [
        task("a", "done", ["tests/x.py::a"]),         # passes: agrees
        task("b", "todo", ["tests/x.py::b"]),         # passes: the hand-set todo is wrong
        task("c", "done", ["tests/x.py::c"]),         # fails: the hand-set done is wrong
        task("d", "todo"),                             # names no test: not covered
    ]})


def test_progress_disagreement_reads_the_recorded_run(records, monkeypatch):
    """QA.progress_accuracy gets its value from the record harness.roadmap.testrun writes for the commit; without one,
    setup skips with the reason asv prints (and the report shows)."""
    from harness.qa import tasks

    monkeypatch.setattr(tasks, "load_tasks", _tasks)
    with pytest.raises(NotImplementedError, match=f"{testrun.NO_RUN_REASON} \\(ffffffff\\)"):
        bench_quality.Quality.track_progress_disagreement.setup()
    _record(records, **{"tests/x.py::a": "passed", "tests/x.py::b": "passed", "tests/x.py::c": "failed"})
    bench_quality.Quality.track_progress_disagreement.setup()
    assert bench_quality.Quality().track_progress_disagreement() == pytest.approx(2 / 3)
    # A run that covers no task gives no value rather than a vacuous 0.
    _record(records, **{"tests/y.py::z": "passed"})
    with pytest.raises(NotImplementedError, match="no task's named tests are in the recorded test run"):
        bench_quality.Quality.track_progress_disagreement.setup()
