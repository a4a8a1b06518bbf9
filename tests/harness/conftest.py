"""Fixtures for the harness tests: hand-written asv 0.6 results files (format version 2).

``fixtures/results/harness-host`` holds two commits. a1a1a1a1 (older): every bound benchmark has a
passing value. b2b2b2b2 (newer): TF/Flax prefill ratio 1.3 -> 1.1 (passes, but regressed > 10%), decode
ratio 1.2 -> 0.8 (FAIL), max-abs logits error null (failed; its stderr is in ``fixtures/stderr``),
load CV without balancing NaN (skipped), the data-pipeline benchmark absent (missing). Both commits hold
passing values of the bench equivalence benchmarks (default and full tier).
"""

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MACHINE = "harness-host"
SHA_A = "a1a1a1a1" + "0" * 32
SHA_B = "b2b2b2b2" + "0" * 32


@pytest.fixture
def results_dir() -> Path:
    return FIXTURES / "results"


@pytest.fixture
def tmp_results(tmp_path: Path) -> Path:
    """A writable copy of the fixture tree (results and stderr side by side, as under .asv/)."""
    shutil.copytree(FIXTURES / "results", tmp_path / "results")
    shutil.copytree(FIXTURES / "stderr", tmp_path / "stderr")
    return tmp_path / "results"


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    """A published three-commit asv history recorded from two folders with two venvs (tests/harness/scratch_asv.py)."""
    from tests.harness import scratch_asv
    return scratch_asv.build(tmp_path_factory.mktemp("scratch-asv"))
