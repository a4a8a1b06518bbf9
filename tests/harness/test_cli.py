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


def test_validate_on_older_commit_fails_only_on_the_success_rate(results_dir, capsys):
    """Every measured criterion passes at a1a1a1a1, but 15 criteria are NOT DELIVERED: the success-rate
    roll-up (40 of 43 met) FAILs, so the gate fails and says why, never passing silently."""
    assert main(["validate", *_args(results_dir, "--commit", "a1a1a1a1")]) == 1
    out = capsys.readouterr().out
    assert "PASS 40, FAIL 1, FAILED-TO-RUN 0, NOT MEASURED 9, NOT DELIVERED 3" in out
    rate_row = next(line for line in out.splitlines() if "QA.milestone_success_rate" in line)
    assert "0.9302" in rate_row and "FAIL" in rate_row and "DERIVED" in rate_row
    undelivered = next(line for line in out.splitlines() if line.startswith("NOT DELIVERED (counted as not met"))
    assert "P0.env_conda_tf" in undelivered and "P0.jupyter_workflow" not in undelivered  # the notebook is delivered


def test_not_delivered_alone_does_not_set_the_exit_code(results_dir, capsys, monkeypatch):
    """The gate's exit code is about FAIL, FAILED-TO-RUN and regressions: without the roll-up, the same
    NOT DELIVERED criteria are printed with their reasons but do not fail validate."""
    from harness.roadmap.criteria import BINDINGS, Binding, NotMeasured

    monkeypatch.setitem(BINDINGS, "QA.milestone_success_rate",
                        Binding("QA.milestone_success_rate", not_measured=NotMeasured("switched off by this test")))
    assert main(["validate", *_args(results_dir, "--commit", "a1a1a1a1")]) == 0
    out = capsys.readouterr().out
    assert "PASS 40, FAIL 0, FAILED-TO-RUN 0" in out and "P3.dualpipe_bubbles" in out


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


# ------------------------------------------------------------------ nothing measured (issue 10, item 6)
def _only_commit(tmp_results, transform):
    """Keep a1a1a1a1 alone, with every results row passed through ``transform(name, row) -> (name, row)``."""
    import json

    next((tmp_results / MACHINE).glob("b2b2b2b2-*.json")).unlink()
    path = next((tmp_results / MACHINE).glob("a1a1a1a1-*.json"))
    data = json.loads(path.read_text())
    data["results"] = dict(transform(name, row) for name, row in data["results"].items())
    path.write_text(json.dumps(data))


def test_validate_fails_when_every_value_is_nan(tmp_results, capsys):
    def nan(name, row):
        return name, [[float("nan")] * len(row[0])] + row[1:]

    _only_commit(tmp_results, nan)
    assert main(["validate", *_args(tmp_results)]) == 1
    err = capsys.readouterr().err
    assert "commit a1a1a1a1 has no measured value at all" in err and "skipped (NaN)" in err


def test_validate_fails_when_every_result_names_an_unknown_benchmark(tmp_results, capsys):
    _only_commit(tmp_results, lambda name, row: (name.replace("bench_", "gone_"), row))
    assert main(["validate", *_args(tmp_results)]) == 1
    assert "has no measured value at all" in capsys.readouterr().err


def test_validate_passes_with_one_measured_value(tmp_results, capsys, monkeypatch):
    from harness.roadmap.criteria import BINDINGS, Binding, NotMeasured

    # The success-rate roll-up would fail validate through the NOT DELIVERED criteria (see
    # test_not_delivered_alone_does_not_set_the_exit_code); this test is about the nothing-measured refusal.
    monkeypatch.setitem(BINDINGS, "QA.milestone_success_rate",
                        Binding("QA.milestone_success_rate", not_measured=NotMeasured("switched off by this test")))
    keep = "bench_quality.Quality.track_doc_completeness"
    _only_commit(tmp_results, lambda name, row: (name if name == keep else name.replace("bench_", "gone_"), row))
    assert main(["validate", *_args(tmp_results)]) == 0
    assert "no measured value" not in capsys.readouterr().err


# ------------------------------------------------------------------ stray files, string values, bad ranges (item 12)
def test_validate_skips_a_stray_binary_file_with_a_warning(tmp_results, capsys):
    (tmp_results / MACHINE / "screenshot.json").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    assert main(["validate", *_args(tmp_results)]) == 1  # the fixture's own verdicts, as without the file
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "screenshot.json" in captured.err
    assert "PX.tf_decode_speed" in captured.out


def test_report_shows_a_string_value_as_failed_with_its_reason(tmp_results, tmp_path, capsys):
    import json

    path = next((tmp_results / MACHINE).glob("b2b2b2b2-*.json"))
    data = json.loads(path.read_text())
    data["results"]["bench_moe.MoE.track_time_ratio_64_vs_8_experts"][0] = ["1.2x"]
    path.write_text(json.dumps(data))
    out = tmp_path / "r.md"
    assert main(["report", *_args(tmp_results, "--out", str(out))]) == 0
    text = out.read_text()
    assert "records '1.2x'" in text and "FAILED-TO-RUN" in text


def _git_repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "asv.conf.json").write_text('{"version": 1, "results_dir": "results"}')
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return root


def test_run_with_a_range_git_cannot_resolve_exits_2(tmp_path, capsys):
    root = _git_repo(tmp_path)
    assert main(["run", "--config", str(root / "asv.conf.json"), "--range", "nosuch..x"]) == 2
    err = capsys.readouterr().err
    assert "--range 'nosuch..x' is not a commit range" in err and "HEAD~3..HEAD" in err


# ------------------------------------------------------------------ --baseline
def test_validate_against_a_chosen_baseline(tmp_results, capsys):
    from tests.harness.asv_files import add_commit

    add_commit(tmp_results, "c3c3c3c3" + "0" * 32, 1700000300000,
               {"bench_throughput.Throughput.track_tf_over_flax": {"values": [1.1, 0.8]}})
    main(["validate", *_args(tmp_results)])
    assert "REGRESSION" not in capsys.readouterr().out  # c3 against b2: the same values
    main(["validate", *_args(tmp_results, "--baseline", "a1a1a1a1")])
    out = capsys.readouterr().out
    assert "REGRESSION PX.tf_decode_speed verdict: PASS @ a1a1a1a1 -> FAIL @ c3c3c3c3" in out


def test_baseline_as_a_git_ref(tmp_path, capsys):
    from tests.harness.asv_files import add_commit
    import shutil

    root = _git_repo(tmp_path)
    sha = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True).strip()
    shutil.copytree(Path(__file__).parent / "fixtures" / "results", root / "results")
    add_commit(root / "results", sha, 1600000000000, {"bench_throughput.Throughput.track_tf_over_flax":
                                                      {"values": [1.5, 1.5]}})  # oldest: the first commit
    args = ["--config", str(root / "asv.conf.json"), "--machine", MACHINE]
    main(["validate", *args, "--baseline", "main"])
    out = capsys.readouterr().out
    assert f"PX.tf_decode_speed verdict: PASS @ {sha[:8]} -> FAIL @ b2b2b2b2" in out
    assert main(["validate", *args, "--baseline", "no-such-branch"]) == 2
    assert "neither a recorded commit nor a git ref" in capsys.readouterr().err
    assert main(["validate", *args, "--baseline", "b2b2", "--commit", "a1a1a1a1"]) == 2
    assert "was recorded after the evaluated commit a1a1a1a1" in capsys.readouterr().err


# ------------------------------------------------------------------ tiers
def test_default_run_leaves_out_the_full_tier():
    import re

    from harness.cli import bench_regex

    names = ["bench_context.ContextExtensionFull.track_ppl_ratio", "bench_context.ContextExtension.track_ppl_ratio",
             "bench_x.XFull.track_y('a', 1)", "bench_x.X.time_y('Full.z')", "bench_quality.Quality.track_x"]
    picked = lambda regex: [n for n in names if regex is None or re.search(regex, n)]  # noqa: E731
    assert picked(bench_regex(None, full=False)) == names[1:2] + names[3:]
    assert picked(bench_regex(None, full=True)) == names
    assert picked(bench_regex("Context", full=False)) == names[1:2]
    assert picked(bench_regex("^bench_context", full=True)) == names[:2]
    assert picked(bench_regex("Quality|ContextExtensionFull", full=False)) == names[4:]


def test_run_refuses_an_unrecorded_baseline_before_running(tmp_path, capsys):
    root = _git_repo(tmp_path)
    assert main(["run", "--config", str(root / "asv.conf.json"), "--baseline", "HEAD~5"]) == 2
    assert "--baseline 'HEAD~5' is not a recorded commit" in capsys.readouterr().err
    assert not (root / "results").exists()  # asv never ran
