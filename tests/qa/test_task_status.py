"""Task statuses derived from the recorded test run, and QA.progress_accuracy as their disagreement with tasks.toml."""

import ast
import json
from pathlib import Path

import pytest

from harness.qa import progress, task_status
from harness.qa.tasks import Status, TasksError, load_tasks, parse_tasks


def task(tid, status="todo", tests=(), phase="phase_1", **extra):
    return {"id": tid, "title": f"task {tid}", "phase": phase, "status": status, "priority": "medium",
            "depends_on": [], "tests": list(tests), **extra}


def parse(*tasks):
    return parse_tasks({"schema_version": 1, "task": list(tasks)})


RUN = {
    "tests/tf_impl/test_attention.py::test_a": "passed",
    "tests/tf_impl/test_attention.py::test_b[tiny]": "passed",
    "tests/tf_impl/test_attention.py::test_b[bench]": "skipped",
    "tests/tf_impl/test_moe.py::test_gate": "passed",
    "tests/tf_impl/test_moe.py::test_dispatch": "failed",
    "tests/tf_impl/test_fp8.py::test_cast": "skipped",
}


def test_status_is_derived_from_the_named_tests():
    (done, failing, absent, uncovered, skipped_only, no_tests, cancelled) = task_status.derive_all(parse(
        task("mla", "in_progress", ["tests/tf_impl/test_attention.py"]),
        task("moe", "done", ["tests/tf_impl/test_moe.py"]),
        task("mla2", "todo", ["tests/tf_impl/test_attention.py::test_a", "tests/tf_impl/test_mla_extra.py"]),
        task("gone", "blocked", ["tests/nowhere.py"]),
        task("fp8", "in_progress", ["tests/tf_impl/test_fp8.py"]),
        task("plan", "todo"),
        task("dropped", "cancelled", ["tests/tf_impl/test_attention.py"]),
    ), RUN)
    assert (done.status, done.source, done.passed) == (Status.DONE, "tests", 2)  # skips do not count
    assert (failing.status, failing.failed) == (Status.IN_PROGRESS, 1)
    assert absent.status is Status.IN_PROGRESS and absent.absent == ("tests/tf_impl/test_mla_extra.py",)
    for hand in (uncovered, skipped_only, no_tests, cancelled):
        assert hand.source == "hand" and hand.status is hand.task.status
    assert [d.task.id for d in (done, failing, absent) if d.disagrees] == ["mla", "moe", "mla2"]


def test_node_id_patterns_select_files_tests_and_parameters_only():
    assert task_status.selects("tests/a.py", "tests/a.py::test_x")
    assert task_status.selects("tests/a.py::test_x", "tests/a.py::test_x[tiny]")
    assert not task_status.selects("tests/a.py::test_x", "tests/a.py::test_xy")
    assert not task_status.selects("tests/a.py", "tests/a.py.bak::test_x")


def test_without_a_recorded_run_every_status_is_hand_set():
    derived = task_status.derive_all(parse(task("mla", "in_progress", ["tests/tf_impl/test_attention.py"])), None)
    assert derived[0].source == "hand" and task_status.progress_disagreement(derived) == (0, 0)


def test_disagreement_is_the_share_of_covered_tasks_whose_hand_status_is_wrong():
    derived = task_status.derive_all(parse(
        task("a", "done", ["tests/tf_impl/test_attention.py"]),      # agrees
        task("b", "in_progress", ["tests/tf_impl/test_moe.py"]),      # agrees (a test fails)
        task("c", "todo", ["tests/tf_impl/test_attention.py::test_a"]),  # disagrees: it passes
        task("d", "todo"),                                             # not covered
    ), RUN)
    assert task_status.progress_disagreement(derived) == (1, 3)


def _all_passing_run(tasks):
    """A run in which every test the tasks name exists and passed."""
    return {(p if "::" in p else f"{p}::test_it"): "passed" for t in tasks for p in t.tests}


def test_project_tasks_with_passing_tests_are_done_not_hand_kept():
    """The issue: phase 1 showed 0/6 done although MLA, MoE and FP8 pass their tests."""
    tasks = load_tasks()
    by_id = {t.id: t for t in tasks}
    for tid in ("T1.mla", "T1.moe_basic", "T1.fp8", "T1.norm_rope"):
        assert by_id[tid].tests, f"{tid} names no tests"
    derived = {d.task.id: d for d in task_status.derive_all(tasks, _all_passing_run(tasks))}
    assert all(derived[t].status is Status.DONE for t in ("T1.mla", "T1.moe_basic", "T1.fp8"))
    text = progress.dashboard(tasks, {}, derived=list(derived.values()), evidence_source="test run (fixture)")
    phase_1 = next(line for line in text.splitlines() if line.startswith("| phase_1 "))
    assert "| 6/6 " in phase_1.replace(" ", " ")
    assert "## Hand-set statuses the evidence contradicts" in text and "`T1.mla`" in text
    wrong, covered = task_status.progress_disagreement(list(derived.values()))
    hand_not_done = sum(by_id[tid].status is not Status.DONE for tid, d in derived.items() if d.source == "tests")
    assert covered == sum(bool(t.tests) for t in tasks) and wrong == hand_not_done > 0
    assert f"Hand-set status contradicted by the evidence: {wrong}/{covered}" in text


def test_tests_field_is_validated():
    with pytest.raises(TasksError, match="tests must be a list of test node ids or files under tests/"):
        parse(task("a", tests=["harness/progress.py"]))
    with pytest.raises(TasksError, match="tests must be a list"):
        parse({**task("b"), "tests": "tests/a.py"})


def test_cli_derives_from_a_tests_file(tmp_path, capsys):
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text('schema_version = 1\n[[task]]\nid = "a"\ntitle = "t"\nphase = "phase_1"\nstatus = "todo"\n'
                          'priority = "low"\ndepends_on = []\ntests = ["tests/tf_impl/test_attention.py"]\n')
    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(json.dumps(RUN))
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text("{}")
    assert progress.main(["--tasks", str(tasks_file), "--verdicts", str(verdicts), "--tests", str(outcomes)]) == 0
    out = capsys.readouterr().out
    assert f"Task evidence: {outcomes}." in out and "- Tasks done: 1/1" in out
    assert "Hand-set status contradicted by the evidence: 1/1 (100%" in out
    outcomes.write_text("[1, 2]")
    assert progress.main(["--tasks", str(tasks_file), "--verdicts", str(verdicts), "--tests", str(outcomes)]) == 2


def test_recorded_run_lookup_says_why_when_there_is_none(tmp_path):
    outcomes, reason = task_status.recorded_outcomes("0" * 40, str(tmp_path))
    assert outcomes is None and reason
    with pytest.raises(LookupError):
        task_status.progress_disagreement_of("0" * 40, load_tasks(), str(tmp_path))


def test_recorded_run_is_read_through_harness_testrun(tmp_path):
    """The tracker reads the latest run that tests/conftest.py records (harness.roadmap.testrun.append_run's file)."""
    from harness.roadmap import testrun

    sha = "1" * 40
    for outcome in ("failed", "passed"):  # two runs of the commit: the latest one counts
        outcomes = {**RUN, "tests/tf_impl/test_moe.py::test_dispatch": outcome}
        testrun.append_run(testrun.TestRun(
            commit=sha, started=f"2025-01-0{1 + (outcome == 'passed')}T00:00:00+00:00", duration_s=1.0,
            exitstatus=int(outcome == "failed"), coverage=False, python="3.11.9", pytest="9.2.0",
            counts=testrun.count_outcomes(outcomes), outcomes=outcomes), tmp_path)
    outcomes, source = task_status.recorded_outcomes(sha, tmp_path)
    assert outcomes["tests/tf_impl/test_moe.py::test_dispatch"] == "passed"
    assert source == "test run of 11111111 started 2025-01-02T00:00:00+00:00"
    tasks = parse(task("moe", "in_progress", ["tests/tf_impl/test_moe.py"]), task("x", "todo"))
    assert task_status.progress_disagreement_of(sha, tasks, tmp_path) == 1.0  # moe passes now: hand status wrong
    (tmp_path / f"{sha}.json").write_text("{")
    outcomes, reason = task_status.recorded_outcomes(sha, tmp_path)
    assert outcomes is None and "is corrupt" in reason


def test_junit_report_gives_pytest_node_ids(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.tf_impl.test_attention" name="test_a" time="0.1"/>'
        '<testcase classname="tests.tf_impl.test_attention" name="test_b[tiny]" time="0.1"><skipped/></testcase>'
        '<testcase classname="tests.tf_impl.test_moe" name="test_gate" time="0.1"><failure message="x"/></testcase>'
        '<testcase classname="tests.qa.test_x.TestGroup" name="test_in_class" time="0.1"><error/></testcase>'
        '</testsuite></testsuites>')
    assert task_status.outcomes_from_junit(str(report)) == {
        "tests/tf_impl/test_attention.py::test_a": "passed",
        "tests/tf_impl/test_attention.py::test_b[tiny]": "skipped",
        "tests/tf_impl/test_moe.py::test_gate": "failed",
        "tests/qa/test_x.py::TestGroup::test_in_class": "error",
    }
    report.write_text("not xml")
    with pytest.raises(ValueError, match="not a JUnit XML report"):
        task_status.outcomes_from_junit(str(report))


def _slow(node) -> bool:
    return any("slow" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def test_every_named_test_exists_in_the_default_suite():
    """A named test that is missing or marked slow is never in the recorded run: its task could never be done."""
    root = Path(__file__).resolve().parents[2]
    problems = []
    for t in load_tasks():
        for pattern in t.tests:
            path, _, name = pattern.partition("::")
            try:
                tree = ast.parse((root / path).read_text())
            except OSError:
                problems.append(f"{t.id}: {path} does not exist")
                continue
            module_slow = any(isinstance(n, ast.Assign) and any(getattr(x, "id", "") == "pytestmark" for x in n.targets)
                              and "slow" in ast.unparse(n.value) for n in tree.body)
            funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            if module_slow:
                problems.append(f"{t.id}: {path} is marked slow as a whole")
            elif name and (name.split("[")[0] not in funcs or _slow(funcs[name.split("[")[0]])):
                problems.append(f"{t.id}: {pattern} is not a default-suite test")
    assert problems == []
