"""End to end: `python -m harness run` on a scratch git repo holding the real benchmark suite.

Only the cheap quality benchmarks run (``-b Quality --quick``), so this exercises the whole chain in
seconds: asv machine + asv run in the existing interpreter with --set-commit-hash, stderr capture,
results parsing, validation, asv publish, the markdown and HTML reports and the summary table; and a
second run on a new commit keeps the first commit's results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness.reports.asv_env import stable_env_name
from harness.roadmap.results import AWAITING

REPO = Path(__file__).resolve().parents[2]


def _git(root: Path, *argv: str) -> str:
    return subprocess.check_output(["git", *argv], cwd=root, text=True).strip()


def _scratch_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "benchmarks", root / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "asv.conf.json", root / "asv.conf.json")
    _git(tmp_path, "init", "-q", "-b", "main", str(root))
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return root


def _run(root: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "--quick", "-b", "Quality", "--config", str(root / "asv.conf.json")]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)


def test_harness_run_records_validates_reports_and_keeps_history(tmp_path):
    root = _scratch_repo(tmp_path)
    first = _git(root, "rev-parse", "HEAD")
    proc = _run(root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = sorted((root / ".asv" / "results" / "harness-host").glob(f"{first[:8]}-*.json"))
    assert len(results) == 1, list((root / ".asv" / "results").rglob("*"))
    recorded = json.loads(results[0].read_text())
    assert recorded["commit_hash"] == first
    assert recorded["env_name"] == stable_env_name("%d.%d" % sys.version_info[:2])   # no venv path in the key
    assert "bench_quality.Quality.track_doc_completeness" in recorded["results"]

    # The summary table and the markdown report carry a measured value and a real verdict for the docs
    # criterion, and NOT MEASURED (never PASS) for criteria whose benchmarks did not run.
    md = (root / "report" / "roadmap.md").read_text()
    docs_row = next(line for line in md.splitlines() if "QA.doc_completeness" in line)
    assert ("PASS" in docs_row or "FAIL" in docs_row) and "NOT MEASURED" not in docs_row
    speed_row = next(line for line in md.splitlines() if "PX.tf_decode_speed" in line)
    assert "NOT MEASURED" in speed_row and "PASS" not in speed_row
    assert "QA.doc_completeness" in proc.stdout
    # The scratch repo has no recorded test run: coverage is NOT MEASURED, rests on no evidence, and the
    # reason its benchmark gave reaches the report and the summary.
    coverage_row = next(line for line in md.splitlines() if "| QA.coverage" in line)
    assert "NOT MEASURED" in coverage_row and "| MEASURED" not in coverage_row
    assert f"SKIPPED: {AWAITING}no green test run recorded for this commit" in md
    assert f"NOT MEASURED QA.coverage: track_test_coverage: SKIPPED: {AWAITING}no green test run recorded" in proc.stdout

    html = root / ".asv" / "html"
    assert (html / "roadmap.html").exists()
    assert "roadmap.html" in (html / "index.html").read_text()
    assert "vendor/jquery-3.3.1/jquery.min.js" in (html / "index.html").read_text()     # offline asv pages

    # A second commit: its run adds a results file and keeps the first one.
    (root / "NOTE").write_text("second\n")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "second")
    proc = _run(root)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results[0].exists()
    second = _git(root, "rev-parse", "HEAD")
    assert list((root / ".asv" / "results" / "harness-host").glob(f"{second[:8]}-*.json"))
