"""The lossless migration of venv-path-keyed results to the stable key (harness.reports.migrate)."""

import hashlib
import json
import math

import pytest

from harness.cli import main
from harness.roadmap.history import Paths, load_history
from harness.reports import migrate
from harness.reports.asv_env import stable_env_name
from tests.harness.conftest import MACHINE, SHA_A

STABLE = stable_env_name("3.11")


def _files(results):
    return sorted(p.name for p in (results / MACHINE).glob("*-*.json"))


def _values(history):
    return [{cid: [(c.check.label, c.verdict, c.value) for c in r.checks] for cid, r in v.items()}
            for v in history.verdicts]


def _same(a, b):
    return (a == b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b)))


def test_rekeys_files_and_sidecars_losslessly_and_keeps_a_backup(tmp_results, tmp_path):
    originals = {p.name: p.read_bytes() for p in (tmp_results / MACHINE).glob("*-*.json")}
    sidecars = {p.name: p.read_text() for p in (tmp_path / "stderr" / MACHINE).glob("*.json")}
    paths = Paths(tmp_path, tmp_path / "asv.conf.json", tmp_results, tmp_path / "html")
    before = load_history(paths, MACHINE)
    assert len(migrate.path_keyed_files(tmp_results)) == 2

    report = migrate.migrate(tmp_results, "3.11")

    assert _files(tmp_results) == [f"{n[:8]}-{STABLE}.json" for n in sorted(originals)]
    assert migrate.path_keyed_files(tmp_results) == []
    for name, raw in originals.items():
        old, new = json.loads(raw), json.loads((tmp_results / MACHINE / f"{name[:8]}-{STABLE}.json").read_text())
        expected = {**old, "env_name": STABLE, "python": "3.11", "params": {**old["params"], "python": "3.11"}}
        assert json.dumps(new, sort_keys=True) == json.dumps(expected, sort_keys=True)   # NaN prints as NaN
    for name, text in sidecars.items():
        assert (tmp_path / "stderr" / MACHINE / f"{name[:8]}-{STABLE}.json").read_text() == text
        assert not (tmp_path / "stderr" / MACHINE / name).exists()
    # the harness reads exactly the same verdicts and values
    assert _values(load_history(paths, MACHINE)) == _values(before)
    # the backup holds every original byte for byte, listed in MIGRATION.json
    log = json.loads((report.backup / "MIGRATION.json").read_text())
    assert {m["from"] for m in log["moves"]} == set(originals)
    for name, raw in originals.items():
        assert (report.backup / "results" / MACHINE / name).read_bytes() == raw
        assert log["originals"][f"results/{MACHINE}/{name}"] == hashlib.sha256(raw).hexdigest()
    for name, text in sidecars.items():
        assert (report.backup / "stderr" / MACHINE / name).read_text() == text
    assert report.backup.parent == tmp_path / "backup"
    assert str(migrate.migrate(tmp_results, "3.11")).startswith("nothing to migrate")   # idempotent


def test_one_commit_from_two_folders_is_merged_newest_row_first(tmp_results):
    src = tmp_results / MACHINE / f"{SHA_A[:8]}-existing-py_work_main_.venv_bin_python.json"
    data = json.loads(src.read_text())
    name = next(iter(data["results"]))
    col = data["result_columns"].index("started_at")
    other = dict(data, env_name="existing-py_tmp_ci2_.venv_bin_python", python="/tmp/ci2/.venv/bin/python",
                 params={**data["params"], "python": "/tmp/ci2/.venv/bin/python"})
    newer = list(data["results"][name])
    newer[0] = [12345.0] * len(newer[0])
    newer[col] = (newer[col] or 0) + 1000
    other["results"] = {name: newer}
    (src.parent / f"{SHA_A[:8]}-existing-py_tmp_ci2_.venv_bin_python.json").write_text(json.dumps(other))

    report = migrate.migrate(tmp_results, "3.11")

    assert len(report.moves) == 3 and len(report.merged) == 1
    merged = json.loads((src.parent / f"{SHA_A[:8]}-{STABLE}.json").read_text())
    assert merged["results"][name] == newer                                    # the newer row won
    assert all(_same(merged["results"][k], v) for k, v in data["results"].items() if k != name)
    assert len(list((report.backup / "results" / MACHINE).glob(f"{SHA_A[:8]}-*.json"))) == 2  # both kept


def test_refuses_a_merge_it_cannot_prove_lossless(tmp_results):
    src = tmp_results / MACHINE / f"{SHA_A[:8]}-existing-py_work_main_.venv_bin_python.json"
    data = json.loads(src.read_text())
    other = dict(data, env_name="existing-py_x_python", python="/x/python", params={**data["params"], "python": "/x"},
                 result_columns=data["result_columns"][:5])
    (src.parent / f"{SHA_A[:8]}-existing-py_x_python.json").write_text(json.dumps(other))
    before = {p.name: p.read_bytes() for p in src.parent.glob("*.json")}
    with pytest.raises(migrate.MigrationError, match="result_columns"):
        migrate.migrate(tmp_results, "3.11")
    assert {p.name: p.read_bytes() for p in src.parent.glob("*.json")} == before    # nothing touched


def test_cli_dry_run_then_migrate(tmp_results, tmp_path, capsys):
    argv = ["--config", str(tmp_path / "asv.conf.json"), "--results-dir", str(tmp_results)]
    assert main(["migrate", "--dry-run", "--python", "3.11", *argv]) == 0
    assert f"-> {SHA_A[:8]}-{STABLE}.json" in capsys.readouterr().out
    assert len(migrate.path_keyed_files(tmp_results)) == 2                         # dry run changed nothing
    assert main(["migrate", "--python", "3.11", *argv]) == 0
    assert "backup of every original" in capsys.readouterr().out
    assert migrate.path_keyed_files(tmp_results) == []


def test_recorded_project_results_are_migrated():
    from tests.harness.scratch_asv import REPO
    assert migrate.path_keyed_files(REPO / ".asv" / "results") == []
