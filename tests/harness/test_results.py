"""Reading asv's results files: values, null/NaN, param mapping, stderr, and every error path."""

import json

import pytest

from harness.roadmap.results import ResultsError, Status, load_benchmarks, load_machine, load_run, lookup
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


# ------------------------------------------------------------------ stray and hand-edited files (issue 10, item 12)
def test_stray_binary_file_is_skipped_with_a_warning_naming_it(tmp_results):
    stray = tmp_results / MACHINE / "thumbnail.json"
    stray.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.warns(UserWarning, match="thumbnail.json is not text"):
        commits = load_machine(tmp_results, MACHINE)
    assert [c.commit_hash for c in commits] == [SHA_A, SHA_B]


@pytest.mark.parametrize("content", ["[1, 2, 3]", "not json at all", '{"hello": "world"}'])
def test_json_that_is_not_an_asv_results_file_is_skipped(tmp_results, content):
    (tmp_results / MACHINE / "notes.json").write_text(content)
    with pytest.warns(UserWarning, match="notes.json"):
        assert len(load_machine(tmp_results, MACHINE)) == 2


def test_string_result_value_is_failed_with_a_reason(tmp_results):
    path = next((tmp_results / MACHINE).glob("a1a1a1a1-*.json"))
    data = json.loads(path.read_text())
    data["results"]["bench_moe.MoE.track_time_ratio_64_vs_8_experts"][0] = ["fast"]
    path.write_text(json.dumps(data))
    value = lookup(load_machine(tmp_results, MACHINE)[0], load_benchmarks(tmp_results),
                   "bench_moe.MoE.track_time_ratio_64_vs_8_experts", {})
    assert value.status is Status.FAILED and value.value is None
    assert "records 'fast'" in value.reason and "not a number" in value.reason and path.name in value.reason


def test_asv_stats_columns_become_a_spread(tmp_results):
    from tests.harness.asv_files import add_commit

    add_commit(tmp_results, "c3c3c3c3" + "0" * 32, 1700000300000, {
        "bench_throughput.Throughput.track_tf_over_flax": {"samples": [[1.2, 1.3, 1.25, 1.22, 1.28], None],
                                                           "values": [None, float("nan")]}})
    commit = load_machine(tmp_results, MACHINE)[-1]
    benchmarks = load_benchmarks(tmp_results)
    value = lookup(commit, benchmarks, "bench_throughput.Throughput.track_tf_over_flax", {"phase": "prefill"})
    assert value.value == 1.25 and value.spread.repeat == 5 and value.spread.samples == (1.2, 1.3, 1.25, 1.22, 1.28)
    assert value.spread.ci_99[0] <= 1.2 and value.spread.ci_99[1] >= 1.3 and value.spread.q_25 == 1.22
    skipped = lookup(commit, benchmarks, "bench_throughput.Throughput.track_tf_over_flax", {"phase": "decode"})
    assert skipped.status is Status.SKIPPED and skipped.spread is None


def test_a_benchmark_left_out_takes_the_latest_earlier_value_of_the_same_version(tmp_results):
    from tests.harness.asv_files import add_commit

    name = "bench_mtp.MTP.track_speculative_speedup"
    add_commit(tmp_results, "c3c3c3c3" + "0" * 32, 1700000300000, {name: {"values": [1.4], "version": "other"}})
    add_commit(tmp_results, "d4d4d4d4" + "0" * 32, 1700000400000, {"bench_quality.Quality.track_test_coverage":
                                                                     {"values": [0.9]}})
    commits = load_machine(tmp_results, MACHINE)
    value = lookup(commits[-1], load_benchmarks(tmp_results), name, {}, commits[:-1])
    assert value.value == 1.7 and value.measured_at == SHA_B  # c3's value has another version: skipped
    assert lookup(commits[-1], load_benchmarks(tmp_results), name, {}).status is Status.MISSING
