"""One continuous history per benchmark across checkout folders and venvs (harness.reports.asv_env).

The scratch history (tests/harness/scratch_asv.py) records commits 1-2 from folder ``a`` with venv
``a/.venv`` and commit 3 from a clone at another path with venv ``b/.venv``, through real asv runs.
"""

import itertools
import json
import sys

from asv.config import Config
from asv.environment import ExistingEnvironment

from harness.reports.asv_env import StableExistingEnvironment, stable_env_name
from tests.harness.scratch_asv import MACHINE, asv


def test_env_identity_ignores_the_interpreter_path(tmp_path):
    # Two paths to the same interpreter, as two venvs in two checkout folders are.
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "python").symlink_to(sys.executable)
        paths.append(str(tmp_path / folder / "python"))
    conf = Config()                       # asv's defaults
    conf.env_dir = str(tmp_path / "env")
    stock = [ExistingEnvironment(conf, p, {}, {}) for p in paths]
    stable = [StableExistingEnvironment(conf, p, {}, {}) for p in paths]
    assert stock[0].name != stock[1].name and stock[0].python != stock[1].python   # what split the history
    version = "%d.%d" % sys.version_info[:2]
    assert {e.name for e in stable} == {stable_env_name(version)} == {f"existing-stable-py{version}"}
    assert {e.python for e in stable} == {version}


def test_fresh_clone_continues_the_lines(scratch):
    files = sorted((scratch.results / MACHINE).glob("*-*.json"))
    assert [f.name[:8] for f in files] == sorted(c[:8] for c in scratch.commits)
    assert {json.loads(f.read_text())["env_name"] for f in files} == {stable_env_name("%d.%d" % sys.version_info[:2])}
    index = json.loads((scratch.html / "index.json").read_text())
    assert index["params"]["python"] == ["%d.%d" % sys.version_info[:2]]        # one line, not one per folder
    graph = next((scratch.html / "graphs").rglob(f"python-*/{scratch.check.benchmark}.json"))
    spec = json.loads((scratch.results / "benchmarks.json").read_text())[scratch.check.benchmark]
    combos = [list(c) for c in itertools.product(*spec["params"])]
    column = combos.index([repr(v) for _, v in scratch.check.params])
    points = json.loads(graph.read_text())                       # [[revision, [value per combination]], ...]
    assert [p[1][column] for p in points] == list(scratch.values)   # all three commits, both folders, one line
    assert [index["revision_to_hash"][str(p[0])] for p in points] == list(scratch.commits)


def test_asv_compare_matches_commits_recorded_from_different_folders(scratch):
    out = asv(scratch.b, "compare", scratch.commits[0][:8], scratch.commits[2][:8], "--machine", MACHINE).stdout
    row = next(line for line in out.splitlines() if scratch.check.benchmark in line
               and repr(scratch.check.params[0][1]) in line)
    assert "n/a" not in row, out
    before, after = (float(cell) for cell in row.split("|")[2:4])   # | change | before | after | ratio | name |
    assert abs(before - scratch.values[0]) < 1e-3 and abs(after - scratch.values[2]) < 1e-3, out
