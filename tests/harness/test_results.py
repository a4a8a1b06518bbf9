"""Reading asv's results files: values, null/NaN, param mapping, stderr, and every error path."""

import json

import pytest

from harness.results import ResultsError, Status, load_benchmarks, load_machine, load_run, lookup
from tests.harness.conftest import MACHINE, SHA_A, SHA_B


def test_asv_itself_reads_the_fixtures(results_dir):
    """The fixtures are in asv's exact format: asv 0.6's own loader accepts them."""
    asv_results = pytest.importorskip("asv.results")
    for path in (results_dir / MACHINE).glob("*-existing-*.json"):
        loaded = asv_results.Results.load(str(path), machine_name=MACHINE)
        assert loaded.commit_hash in (SHA_A, SHA_B)


def test_commits_oldest_first_with_values(results_dir):
    commits = load_machine(results_dir, MACHINE)
    assert [c.commit_hash for c in commits] == [SHA_A, SHA_B]
    benchmarks = load_benchmarks(results_dir)
    value = lookup(commits[0], benchmarks, "bench_kvcache.KVCache.track_reduction_vs_67b_gqa", {"kv_bits": 6})
    assert value.status is Status.OK and value.value == pytest.approx(0.9334)
    value = lookup(commits[0], benchmarks, "bench_throughput.Throughput.track_tf_over_flax", {"phase": "'decode'"})
    assert value.value == 1.2  # asv's repr strings are accepted as well as plain values


def test_null_is_failed_with_stderr_nan_is_skipped_absent_is_missing(results_dir):
    latest = load_machine(results_dir, MACHINE)[-1]
    benchmarks = load_benchmarks(results_dir)
    failed = lookup(latest, benchmarks, "bench_equivalence.Equivalence.track_max_abs_logits_error", {"config": "tiny"})
    assert failed.status is Status.FAILED and "layers.1.ffn.gate.bias" in failed.stderr
    skipped = lookup(latest, benchmarks, "bench_moe.MoE.track_load_cv", {"balancing": "none"})
    assert skipped.status is Status.SKIPPED and skipped.value is None
    assert lookup(latest, benchmarks, "bench_moe.MoE.track_load_cv", {"balancing": "bias"}).value == 0.03
    missing = lookup(latest, benchmarks, "bench_data.DataPipeline.track_tokens_per_second", {})
    assert missing.status is Status.MISSING


def test_multi_param_product_order(tmp_results):
    """result is aligned with itertools.product(*params): the last parameter varies fastest."""
    bj = json.loads((tmp_results / "benchmarks.json").read_text())
    bj["bench_x.X.track_grid"] = {"name": "bench_x.X.track_grid", "type": "track", "unit": "u",
                                  "param_names": ["a", "b"], "params": [["1", "2"], ["'p'", "'q'", "'r'"]]}
    (tmp_results / "benchmarks.json").write_text(json.dumps(bj))
    path = next((tmp_results / MACHINE).glob("a1a1a1a1-*.json"))
    data = json.loads(path.read_text())
    data["results"]["bench_x.X.track_grid"] = [[10, 11, 12, 20, 21, 22], [["1", "2"], ["'p'", "'q'", "'r'"]]]
    path.write_text(json.dumps(data))
    commit = load_machine(tmp_results, MACHINE)[0]
    benchmarks = load_benchmarks(tmp_results)
    assert lookup(commit, benchmarks, "bench_x.X.track_grid", {"a": 2, "b": "q"}).value == 21
    assert lookup(commit, benchmarks, "bench_x.X.track_grid", {"a": 1, "b": "r"}).value == 12


def test_missing_results_dir(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_machine(tmp_path / "nowhere", MACHINE)


def test_missing_benchmarks_json(tmp_results):
    (tmp_results / "benchmarks.json").unlink()
    with pytest.raises(ResultsError, match="benchmarks.json does not exist"):
        load_benchmarks(tmp_results)


def test_corrupt_truncated_file(tmp_results):
    path = next((tmp_results / MACHINE).glob("b2b2b2b2-*.json"))
    path.write_text(path.read_text()[:500])
    with pytest.raises(ResultsError, match=r"corrupt or truncated .*line 1"):
        load_machine(tmp_results, MACHINE)


def test_unsupported_version(tmp_results):
    path = next((tmp_results / MACHINE).glob("a1a1a1a1-*.json"))
    data = json.loads(path.read_text())
    data["version"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="format version 1; this harness reads version 2"):
        load_run(path)


def test_unknown_machine_lists_the_known_ones(results_dir):
    with pytest.raises(ResultsError, match=r"no results for machine 'other-host'.*\['harness-host'\]"):
        load_machine(results_dir, "other-host")


def test_directory_copied_from_another_machine(tmp_results):
    (tmp_results / MACHINE / "machine.json").write_text(json.dumps({"machine": "laptop", "version": 1}))
    with pytest.raises(ResultsError, match="names machine 'laptop'"):
        load_machine(tmp_results, MACHINE)


def test_results_file_from_another_machine(tmp_results):
    path = next((tmp_results / MACHINE).glob("a1a1a1a1-*.json"))
    data = json.loads(path.read_text())
    data["params"]["machine"] = "laptop"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="recorded on machine 'laptop', not 'harness-host'"):
        load_machine(tmp_results, MACHINE)


def test_unknown_benchmark_and_param_value(results_dir):
    commit = load_machine(results_dir, MACHINE)[0]
    benchmarks = load_benchmarks(results_dir)
    with pytest.raises(ResultsError, match="unknown benchmark 'bench_nope.X.track_y'"):
        lookup(commit, benchmarks, "bench_nope.X.track_y", {})
    with pytest.raises(ResultsError, match="dims='huge' is not one of"):
        lookup(commit, benchmarks, "bench_kvcache.KVCache.track_reduction_vs_mha", {"dims": "huge"})
