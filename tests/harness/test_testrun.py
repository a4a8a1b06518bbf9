"""The per-commit test record (harness.roadmap.testrun), the suite hook that writes it (tests/conftest.py) and
the named test groups criteria rest on (harness/roadmap/test_groups.toml)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.roadmap import testrun

REPO = Path(__file__).resolve().parents[2]


def _run(commit="c" * 40, **outcomes):
    outcomes = outcomes or {"t.py::a": "passed", "t.py::b": "passed"}
    return testrun.TestRun(commit=commit, started="2025-01-01T00:00:00+00:00", duration_s=1.5,
                           exitstatus=0 if all(v == "passed" for v in outcomes.values()) else 1, coverage=True,
                           python="3.11.9", pytest="9.2.0", counts=testrun.count_outcomes(outcomes, 2),
                           outcomes=outcomes)


def test_counts_and_green():
    run = _run(**{"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "error", "t.py::d": "skipped"})
    assert run.counts["total"] == 4 and run.counts["deselected"] == 2
    assert (run.passed, run.failed, run.total) == (1, 2, 4) and not run.green
    assert _run().green
    with pytest.raises(testrun.TestRunError, match="unknown test outcomes"):
        testrun.count_outcomes({"x": "flaky"})


def test_record_keeps_every_run_and_reads_the_latest(tmp_path):
    red = _run(**{"t.py::a": "failed"})
    path = testrun.append_run(red, tmp_path)
    testrun.append_run(_run(), tmp_path)
    data = json.loads(path.read_text())
    assert data["version"] == testrun.RECORD_VERSION and [r["green"] for r in data["runs"]] == [False, True]
    latest = testrun.latest_run(red.commit, tmp_path)
    assert latest.green and latest.outcomes == {"t.py::a": "passed", "t.py::b": "passed"}
    assert testrun.latest_run("d" * 40, tmp_path) is None


def test_corrupt_record_is_named_and_kept_aside(tmp_path):
    path = testrun.record_path("c" * 40, tmp_path)
    path.write_text("{not json")
    with pytest.raises(testrun.TestRunError, match="is corrupt"):
        testrun.latest_run("c" * 40, tmp_path)
    testrun.append_run(_run(), tmp_path)
    assert path.with_name(path.name + ".corrupt").read_text() == "{not json"
    assert testrun.latest_run("c" * 40, tmp_path).green


def test_group_scores_its_tests_and_zero_when_none_ran():
    group = testrun.TestGroup("g", "d", ("t.py::a", "u.py"))
    run = _run(**{"t.py::a[1]": "passed", "t.py::ab": "failed", "u.py::x": "passed", "u.py::y": "skipped"})
    assert group.selects("t.py::a[1]") and not group.selects("t.py::ab") and group.selects("u.py::x")
    assert testrun.group_passed_fraction(run, group) == pytest.approx(2 / 3)
    assert testrun.group_passed_fraction(_run(), testrun.TestGroup("g", "d", ("v.py",))) == 0.0
    assert testrun.unmatched_patterns(_run(), [group]) == ["g: u.py"]


def test_bad_group_file_is_named(tmp_path):
    bad = tmp_path / "groups.toml"
    bad.write_text('[e2e]\ndescription = "x"\ntests = []\n')
    with pytest.raises(testrun.TestRunError, match=r"\[e2e\].*non-empty list"):
        testrun.load_groups(bad)
    bad.write_text("[e2e\n")
    with pytest.raises(testrun.TestRunError, match="not valid TOML"):
        testrun.load_groups(bad)
    with pytest.raises(testrun.TestRunError, match="test groups file .*none.toml does not exist"):
        testrun.load_groups(tmp_path / "none.toml")


def test_every_named_test_exists_in_the_default_suite():
    """A renamed or deleted test would make its group score 0: each pattern names a file, and a test
    function defined in it that is not marked slow."""
    for group in testrun.load_groups().values():
        for pattern in group.tests:
            path, _, name = pattern.partition("::")
            source = REPO / path
            assert source.is_file(), f"group {group.name}: {path} does not exist"
            if not name:
                continue
            funcs = {n.name: n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}
            assert name in funcs, f"group {group.name}: {path} defines no {name}"
            marks = [ast.unparse(d) for d in funcs[name].decorator_list]
            assert not any("slow" in m for m in marks), f"group {group.name}: {pattern} is slow, never in the record"


# ------------------------------------------------------------------ the hook in tests/conftest.py
_SUITE = '''
import pytest

def test_ok():
    pass

def test_broken():
    assert 1 == 2

def test_skipped():
    pytest.skip("not here")

@pytest.mark.slow
def test_heavy():
    pass
'''
_PYPROJECT = '''[tool.pytest.ini_options]
testpaths = ["tests"]
markers = ["slow: heavy"]
addopts = "-m 'not slow' -p no:cacheprovider"
'''


def _git(root: Path, *argv: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=root, check=True,
                   capture_output=True)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A scratch git repo with the project's suite hook (tests/conftest.py) and a small suite."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "test_small.py").write_text(_SUITE)
    (root / "pyproject.toml").write_text(_PYPROJECT)
    (root / ".gitignore").write_text(".asv/\n__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "suite")
    return root


def _pytest(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *argv], cwd=root, capture_output=True, text=True,
                          timeout=120)


def _records(root: Path) -> list[dict]:
    sha = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True).strip()
    path = root / ".asv" / "tests" / f"{sha}.json"
    return json.loads(path.read_text())["runs"] if path.exists() else []


def test_whole_default_run_is_recorded_with_every_outcome(scratch):
    proc = _pytest(scratch)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = _records(scratch)
    assert run["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1, "xfailed": 0, "xpassed": 0,
                             "not run": 0, "total": 3, "deselected": 1}
    assert run["outcomes"]["tests/test_small.py::test_broken"] == "failed"
    assert run["exitstatus"] == 1 and run["green"] is False and run["coverage"] is False
    assert run["pytest"] == pytest.__version__ and run["python"].startswith("3.")


def test_partial_or_dirty_runs_are_not_recorded(scratch):
    assert _pytest(scratch, "-k", "test_ok").returncode == 0
    assert _pytest(scratch, "tests/test_small.py").returncode == 1
    assert _records(scratch) == []
    (scratch / "tests" / "test_small.py").write_text(_SUITE.replace("1 == 2", "1 == 1"))  # uncommitted fix
    assert _pytest(scratch).returncode == 0
    assert _records(scratch) == []
    _git(scratch, "commit", "-qam", "fix")
    assert _pytest(scratch).returncode == 0
    (run,) = _records(scratch)
    assert run["green"] and run["counts"]["passed"] == 2


def test_a_run_stopped_by_x_records_the_tests_it_never_ran(scratch):
    assert _pytest(scratch, "-x").returncode == 1
    (run,) = _records(scratch)
    assert run["outcomes"]["tests/test_small.py::test_skipped"] == "not run"
    assert run["counts"]["not run"] == 1 and run["counts"]["total"] == 3 and not run["green"]


def test_harness_records_under_asv_do_not_make_the_checkout_dirty(scratch):
    (scratch / ".asv" / "results").mkdir(parents=True)
    (scratch / ".asv" / "results" / "benchmarks.json").write_text("{}")
    (scratch / ".gitignore").write_text("__pycache__/\n.asv/tests/\n")  # results are tracked, as in the project
    _git(scratch, "add", "-A")
    _git(scratch, "commit", "-qm", "track .asv results")
    (scratch / ".asv" / "results" / "benchmarks.json").write_text('{"new": 1}')  # rewritten by asv
    (scratch / ".asv" / "results" / "abc-run.json").write_text("{}")          # a new, untracked results file
    assert _pytest(scratch).returncode == 1
    assert len(_records(scratch)) == 1
    (scratch / "tests" / "test_new.py").write_text("def test_new():\n    pass\n")  # an untracked test: dirty
    assert _pytest(scratch).returncode == 1
    assert len(_records(scratch)) == 1
