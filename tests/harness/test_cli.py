"""The CLI on fixture results: exit codes of validate, report output, hooks for modules written elsewhere."""

import subprocess
import sys
from pathlib import Path

from harness.cli import main
from tests.harness.conftest import MACHINE

REPO = Path(__file__).resolve().parents[2]


def _args(results_dir, *extra):
    return ["--results-dir", str(results_dir), "--machine", MACHINE, *extra]


def test_validate_fails_on_latest_commit(results_dir, capsys):
    assert main(["validate", *_args(results_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "REGRESSION" in out


def test_validate_passes_on_older_commit(results_dir, capsys):
    assert main(["validate", *_args(results_dir, "--commit", "a1a1a1a1")]) == 0
    assert "PASS 19, FAIL 0, FAILED-TO-RUN 0" in capsys.readouterr().out


def test_validate_exit_2_on_unreadable_results(tmp_path, capsys):
    assert main(["validate", *_args(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["validate", *_args(tmp_path / "missing", "--machine", "other")]) == 2


def test_validate_unknown_commit(results_dir, capsys):
    assert main(["validate", *_args(results_dir, "--commit", "deadbeef")]) == 2
    assert "a1a1a1a1, b2b2b2b2" in capsys.readouterr().err


def test_report_writes_files(results_dir, tmp_path):
    out = tmp_path / "r.md"
    config = tmp_path / "asv.conf.json"
    config.write_text('{"version": 1, "html_dir": "html"}')
    assert main(["report", "--config", str(config), *_args(results_dir, "--out", str(out))]) == 0
    assert out.exists() and (tmp_path / "html" / "roadmap.html").exists()


def test_roadmap_prints_every_criterion(capsys):
    from harness.roadmap import all_criteria
    assert main(["roadmap"]) == 0
    out = capsys.readouterr().out
    assert all(cid in out for cid in all_criteria()) and "50 weeks" in out


def test_hook_for_missing_module_says_so(capsys, monkeypatch):
    import harness.cli as cli
    monkeypatch.setitem(cli._HOOKS, "progress", "harness.does_not_exist_yet")
    assert main(["progress"]) == 2
    assert "not written yet" in capsys.readouterr().err


def test_exit_code_through_python_m(results_dir):
    proc = subprocess.run([sys.executable, "-m", "harness", "validate", *_args(results_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
