"""Suite-wide hooks: attribute the coverage report of a whole default run to the commit it measured.

pytest-cov (configured in pyproject's addopts) writes ``.asv/coverage/last-run.json`` after every run.
Only a run of the whole default suite, green, on a clean checkout measures "the coverage of commit X",
so only then is the report copied to ``.asv/coverage/<sha>.json``, where the QA.coverage benchmark
(``benchmarks/bench_quality.py``) looks for it. A partial run, a red run or uncommitted changes leave
the per-commit reports alone, so the criterion is NOT MEASURED rather than wrong.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COVERAGE_DIR = ROOT / ".asv" / "coverage"


def _git(*argv: str) -> str | None:
    try:
        return subprocess.check_output(["git", *argv], cwd=ROOT, text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _is_whole_default_run(config: pytest.Config) -> bool:
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and config.option.markexpr == "not slow" and not config.option.keyword)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = COVERAGE_DIR / "last-run.json"
    if exitstatus != 0 or not report.exists() or not _is_whole_default_run(session.config):
        return
    sha = _git("rev-parse", "HEAD")
    if sha is None or _git("status", "--porcelain", "--untracked-files=no"):
        return  # no commit, or the measured code is not the commit's
    shutil.copyfile(report, COVERAGE_DIR / f"{sha}.json")
