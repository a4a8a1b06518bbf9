"""The regression gate: asv compare's rule (significance on the recorded spread, and the factor), verdict
regressions that tell a lost value from a benchmark left out of a partial run, and the calibrated twin."""

import json

import numpy as np
import pytest

from harness.roadmap.criteria import Check, Comparator, Evidence
from harness.roadmap.gate import (FACTOR, caused_here, counted, regressions, significance, value_regressed,
                                  within_the_noise, worse_by_factor)
from harness.roadmap.results import Spread, Status, Value, load_benchmarks, load_machine
from harness.roadmap.validate import Verdict, evaluate_history
from tests.harness.asv_files import add_commit
from tests.harness.conftest import MACHINE

HIGHER = Check("b.C.track_x", Comparator.GE, 1.0, "ratio", Evidence.MEASURED)
LOWER = Check("b.C.track_x", Comparator.LT, 600.0, "s", Evidence.MEASURED)
EQUAL = Check("b.C.track_x", Comparator.EQ, 1.0, "fraction", Evidence.MEASURED)


def _value(samples, sha="c" * 40) -> Value:
    """A Value as the harness reads it from asv: the median and asv's own statistics of ``samples``."""
    from asv_runner.statistics import compute_stats

    median, stats = compute_stats(list(samples), 1)
    spread = Spread((stats["ci_99_a"], stats["ci_99_b"]), stats["q_25"], stats["q_75"], stats["repeat"],
                    tuple(samples))
    return Value(Status.OK, median, spread=spread, measured_at=sha)


def _noisy(center, n=9, cv=0.08, seed=0):
    return list(center * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def test_worse_follows_the_comparator_and_asvs_factor():
    assert worse_by_factor(HIGHER, 1.3, 1.1) and not worse_by_factor(HIGHER, 1.3, 1.2)  # 1.18x vs 1.08x
    assert not worse_by_factor(HIGHER, 1.0, 2.0)                                         # better
    assert worse_by_factor(LOWER, 400, 500) and not worse_by_factor(LOWER, 400, 430)
    assert not worse_by_factor(LOWER, 400, 100)
    assert worse_by_factor(EQUAL, 1.0, 0.99) and not worse_by_factor(EQUAL, 0.99, 1.0)   # further from == 1
    assert not worse_by_factor(HIGHER, float("nan"), 1.0)
    assert FACTOR == 1.1


def test_run_to_run_noise_within_the_spread_is_not_a_regression():
    """The MoE ratio went 1.31 -> 1.21 between two runs of one commit: with per-pair samples as noisy as
    that (CV 8%), the medians differ by 8-15% but the samples overlap, so asv's test says no."""
    before, after = _value(_noisy(1.31, seed=1)), _value(_noisy(1.21, seed=2))
    assert worse_by_factor(HIGHER, 1.31, 1.21 / 1.05)  # more than the factor apart would not suffice either
    assert significance(before, after)[0] is False
    assert value_regressed(HIGHER, before, after) is None


def test_a_clear_slowdown_with_tight_samples_is_flagged_by_mann_whitney():
    before, after = _value(_noisy(1.30, cv=0.02, seed=3)), _value(_noisy(1.30 / 1.25, cv=0.02, seed=4))
    why = value_regressed(HIGHER, before, after)
    assert why is not None and "20% worse" in why and "Mann-Whitney U on 9 vs 9 samples" in why


def test_significant_but_within_the_factor_is_not_flagged():
    before, after = _value(_noisy(1.30, cv=0.005, seed=5)), _value(_noisy(1.30 / 1.05, cv=0.005, seed=6))
    assert significance(before, after)[0] is True
    assert value_regressed(HIGHER, before, after) is None


def test_few_samples_fall_back_to_the_ci_overlap_rule():
    before, after = _value([400, 405, 398, 402, 401]), _value([520, 530, 515, 525, 522])
    why = value_regressed(LOWER, before, after)
    assert why is not None and "99% CIs of the median" in why and "do not overlap" in why
    noisy_after = _value([300, 700, 410, 520, 380])
    assert value_regressed(LOWER, before, noisy_after) is None  # its CI overlaps the baseline's


def test_without_spread_the_factor_alone_decides_as_asv_compare_does():
    before, after = Value(Status.OK, 0.95), Value(Status.OK, 0.80)
    assert significance(before, after) is None
    assert "factor alone" in value_regressed(HIGHER, before, after)
    assert value_regressed(HIGHER, before, Value(Status.OK, 0.90)) is None


# ------------------------------------------------------------------ regressions over recorded commits
SHA_C, SHA_D, SHA_E = ("c3c3c3c3" + "0" * 32, "d4d4d4d4" + "0" * 32, "e5e5e5e5" + "0" * 32)
RATIO = "bench_throughput.Throughput.track_tf_over_flax"
CKPT = "bench_checkpoint.Checkpoint.track_save_load_seconds_671b"
TWIN = "bench_checkpoint.Checkpoint.track_save_load_over_raw_io"


def _history(results_dir):
    return evaluate_history(load_machine(results_dir, MACHINE), load_benchmarks(results_dir))


def _with_twin(results_dir):
    bj = json.loads((results_dir / "benchmarks.json").read_text())
    bj[TWIN] = {**bj[CKPT], "name": TWIN, "unit": "ratio", "version": "1"}
    (results_dir / "benchmarks.json").write_text(json.dumps(bj))


def test_a_benchmark_left_out_of_a_partial_run_is_no_regression(tmp_results):
    """c3 ran only the throughput ratio (-b Throughput): every other criterion keeps a1/b2's values, marked
    stale, and nothing is flagged for them, not even b2's FAILED-TO-RUN ones."""
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=7), _noisy(1.15, seed=8)]}})
    b2, c3 = _history(tmp_results)[1:]
    kv = c3["P1.mla_kv_reduction"]
    assert kv.verdict is Verdict.PASS and all(c.stale and c.measured_at.startswith("b2b2b2b2") for c in kv.checks)
    assert c3["P4.data_throughput"].checks[0].measured_at.startswith("a1a1a1a1")      # b2 did not run it either
    assert not caused_here(c3["P1.synthetic_tests"])                                  # stale FAILED-TO-RUN
    regs = regressions(b2, c3)
    assert {r.criterion_id for r in regs} <= {"PX.tf_prefill_speed", "PX.tf_decode_speed"}
    assert c3["PX.tf_decode_speed"].verdict is Verdict.PASS


def test_a_value_lost_at_the_new_commit_is_a_regression(tmp_results):
    """PASS -> NOT MEASURED when the benchmark ran and recorded NaN, or a parameter went missing."""
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=7), _noisy(1.15, seed=8)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"values": [float("nan"), 1.15]}})
    c3, d4 = _history(tmp_results)[2:]
    regs = {(r.criterion_id, r.what): r for r in regressions(c3, d4)}
    lost = regs[("PX.tf_prefill_speed", "verdict")]
    assert (lost.before, lost.after) == ("PASS", "NOT MEASURED") and "NaN" in lost.detail


def _skipped_with(results_dir, sha, name, message):
    """The stderr capture the harness keeps beside ``sha``'s results file: asv's line for a skip in setup."""
    from harness.roadmap.results import stderr_path

    path = stderr_path(results_dir, MACHINE, f"{sha[:8]}-existing-py_work_main_.venv_bin_python.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: f"asv: skipped: NotImplementedError({message!r})\n"}))


def test_a_value_awaiting_its_input_record_is_stale_not_lost(tmp_results):
    """A commit whose tests have not been recorded yet skips the ratio with an AWAITING reason: the earlier
    value stands in, marked stale, and nothing is flagged; the same skip without AWAITING is a lost value."""
    from harness.roadmap.results import AWAITING

    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=7), _noisy(1.15, seed=8)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"values": [float("nan"), float("nan")]}})
    _skipped_with(tmp_results, SHA_D, RATIO, f"{AWAITING}no test run recorded for this commit (d4d4d4d4)")
    c3, d4 = _history(tmp_results)[2:]
    prefill = d4["PX.tf_prefill_speed"].checks[0]
    assert prefill.verdict is Verdict.PASS and prefill.stale and prefill.measured_at.startswith("c3c3c3c3")
    assert "awaiting" in prefill.reason and not caused_here(d4["PX.tf_prefill_speed"])
    assert not [r for r in regressions(c3, d4) if r.criterion_id in ("PX.tf_prefill_speed", "PX.tf_decode_speed")]

    _skipped_with(tmp_results, SHA_D, RATIO, "the benchmark cannot run here")
    c3, d4 = _history(tmp_results)[2:]
    assert d4["PX.tf_prefill_speed"].verdict is Verdict.NOT_MEASURED
    assert ("PX.tf_prefill_speed", "verdict") in {(r.criterion_id, r.what) for r in regressions(c3, d4)}


def test_noise_is_not_flagged_and_a_slowdown_is(tmp_results):
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=7), _noisy(1.15, seed=8)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"samples": [_noisy(1.25, seed=9), _noisy(1.15, seed=10)]}})
    add_commit(tmp_results, SHA_E, 1700000500000, {RATIO: {"samples": [_noisy(1.0, cv=0.02, seed=11),
                                                                         _noisy(1.15, seed=12)]}})
    c3, d4, e5 = _history(tmp_results)[2:]
    assert regressions(c3, d4) == []
    (reg,) = regressions(d4, e5)
    assert reg.what == "track_tf_over_flax[phase=prefill]" and "significant" in reg.detail


def test_the_gate_compares_the_calibrated_twin_not_the_raw_throughput(tmp_results):
    """A slower disk moves the 671B checkpoint time by 33%, but checkpoint over raw I/O stays: no regression.
    The checkpoint code getting slower against the same raw I/O is one."""
    _with_twin(tmp_results)
    add_commit(tmp_results, SHA_C, 1700000300000, {CKPT: {"samples": [_noisy(300, seed=1, cv=0.02)]},
                                                    TWIN: {"samples": [_noisy(2.5, seed=2, cv=0.02)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {CKPT: {"samples": [_noisy(400, seed=3, cv=0.02)]},
                                                    TWIN: {"samples": [_noisy(2.5, seed=4, cv=0.02)]}})
    add_commit(tmp_results, SHA_E, 1700000500000, {CKPT: {"samples": [_noisy(400, seed=5, cv=0.02)]},
                                                    TWIN: {"samples": [_noisy(3.2, seed=6, cv=0.02)]}})
    c3, d4, e5 = _history(tmp_results)[2:]
    assert not [r for r in regressions(c3, d4) if r.criterion_id == "P4.checkpoint_time"]
    (reg,) = [r for r in regressions(d4, e5) if r.criterion_id == "P4.checkpoint_time"]
    assert reg.what.startswith("track_save_load_seconds_671b (gate: track_save_load_over_raw_io 2.")
    assert "-> 3." in reg.what


def test_a_new_version_of_the_compared_benchmark_is_not_compared(tmp_results):
    add_commit(tmp_results, SHA_C, 1700000300000,
               {RATIO: {"samples": [_noisy(1.25, cv=0.01, seed=7), _noisy(1.15, seed=8)]}})
    add_commit(tmp_results, SHA_D, 1700000400000,
               {RATIO: {"version": "v2", "samples": [_noisy(1.05, cv=0.01, seed=9), _noisy(1.15, seed=10)]}})
    c3, d4 = _history(tmp_results)[2:]
    assert regressions(c3, d4) == []


def test_a_value_regression_names_the_commit_the_baseline_value_was_measured_at(tmp_results):
    """d4 ran only the MoE benchmark (-b), so its prefill ratio is c3's, stale: e5's slowdown is flagged
    against d4 as the baseline, but the line says 1.25 @ c3c3c3c3, where that value was measured."""
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, cv=0.02, seed=7),
                                                                         _noisy(1.15, seed=8)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {"bench_moe.MoE.track_time_ratio_64_vs_8_experts": {"values": [1.2]}})
    add_commit(tmp_results, SHA_E, 1700000500000, {RATIO: {"samples": [_noisy(1.0, cv=0.02, seed=11),
                                                                         _noisy(1.15, seed=12)]}})
    d4, e5 = _history(tmp_results)[3:]
    (reg,) = [r for r in regressions(d4, e5) if r.criterion_id == "PX.tf_prefill_speed"]
    assert reg.commit_before == SHA_C and reg.commit_after == SHA_E
    assert "@ c3c3c3c3 ->" in str(reg) and "d4d4d4d4" not in str(reg)


@pytest.mark.parametrize("check", [HIGHER, LOWER])
def test_improvements_are_never_regressions(check):
    before, after = _value([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0]), _value([2.0, 2.01, 1.99, 2.0, 2.02, 1.98, 2.0])
    assert value_regressed(check, *((before, after) if check is HIGHER else (after, before))) is None


FLOOR = "bench_throughput.Throughput.track_decode_over_floor"
STREAM = "bench_throughput.Throughput.track_stream_bandwidth"


def _run_beside_a_peak(results_dir, sha, date, name, centres, stream, seed, **stream_spec):
    """A commit whose ``name`` (a two-parameter sampled benchmark) has tight samples around ``centres`` and
    whose copy bandwidth (the criterion's host peak) reads ``stream``."""
    samples = [_noisy(c, cv=0.02, seed=seed + j) for j, c in enumerate(centres)]
    add_commit(results_dir, sha, date, {name: {"samples": samples}, STREAM: {"values": [stream], **stream_spec}})


def test_a_regression_beside_a_moved_host_peak_says_the_host_changed(tmp_results):
    """The decode-over-floor ratio nearly tripling counts either way; when the copy bandwidth measured in the
    same process moved by more than the factor too (as on the shared host, 44 -> 82 GB/s), the regression
    says so and names the peak; with the peak where it was, it does not."""
    _run_beside_a_peak(tmp_results, SHA_C, 1700000300000, FLOOR, (2.7, 3.6), 43.8, seed=1)
    _run_beside_a_peak(tmp_results, SHA_D, 1700000400000, FLOOR, (7.5, 9.1), 82.0, seed=3)
    _run_beside_a_peak(tmp_results, SHA_E, 1700000500000, FLOOR, (7.5, 9.1), 45.0, seed=5)
    c3, d4, e5 = _history(tmp_results)[2:]
    (shifted,) = [r for r in regressions(c3, d4) if r.criterion_id == "PX.decode_roofline"]
    assert shifted.host_shift and "significant" in shifted.detail
    assert "the host changed under the run: track_stream_bandwidth 43.8 -> 82 GB/s (+87%)" in shifted.detail
    (plain,) = [r for r in regressions(c3, e5) if r.criterion_id == "PX.decode_roofline"]
    assert not plain.host_shift and "host" not in plain.detail      # 43.8 -> 45 is within the factor


def test_a_host_peak_of_another_version_is_not_compared(tmp_results):
    """A new version of the peak's benchmark measures it another way (track_stream_bandwidth v2 times the copy
    inside the decode rounds): its move is not a host shift."""
    _run_beside_a_peak(tmp_results, SHA_C, 1700000300000, FLOOR, (2.7, 3.6), 43.8, seed=1)
    _run_beside_a_peak(tmp_results, SHA_D, 1700000400000, FLOOR, (7.5, 9.1), 82.0, seed=3, version="v2")
    c3, d4 = _history(tmp_results)[2:]
    (reg,) = [r for r in regressions(c3, d4) if r.criterion_id == "PX.decode_roofline"]
    assert not reg.host_shift and "host" not in reg.detail


def test_the_tf_over_flax_ratios_name_a_moved_host_peak_too(tmp_results):
    """The decode ratio is timed in the same process as the copy: a drop beside a moved copy bandwidth says so."""
    _run_beside_a_peak(tmp_results, SHA_C, 1700000300000, RATIO, (1.45, 1.34), 43.8, seed=1)
    _run_beside_a_peak(tmp_results, SHA_D, 1700000400000, RATIO, (1.45, 0.9), 70.0, seed=3)
    c3, d4 = _history(tmp_results)[2:]
    regs = {(r.criterion_id, r.what): r for r in regressions(c3, d4)}
    assert regs[("PX.tf_decode_speed", "verdict")].host_shift              # 0.9 < 1: PASS -> FAIL
    assert "track_stream_bandwidth 43.8 -> 70 GB/s" in regs[("PX.tf_decode_speed", "track_tf_over_flax[phase=decode]")].detail
    assert ("PX.tf_prefill_speed", "track_tf_over_flax[phase=prefill]") not in regs


def test_a_single_timing_is_flagged_only_beyond_its_declared_run_to_run_range():
    """The first TF training step is timed once per process and moved 11.3-13.9 s between runs of the same
    code; with run_to_run 1.25 the 006c0c35 move (12.47 -> 13.87 s, 11%) is not a regression, a 30% one is,
    and a check without a declared range keeps asv's factor."""
    compile_time = Check("b.C.track_first_step_seconds", Comparator.LT, 60.0, "seconds", Evidence.MEASURED,
                         run_to_run=1.25)
    before = Value(Status.OK, 12.47)
    assert value_regressed(compile_time, before, Value(Status.OK, 13.87)) is None
    assert "run-to-run range x1.25" in value_regressed(compile_time, before, Value(Status.OK, 16.2))
    assert "factor alone" in value_regressed(LOWER, before, Value(Status.OK, 13.87))
    # samples, where recorded, still decide by asv's rule, whatever the declared range
    tight = Check("b.C.track_x", Comparator.LT, 600.0, "s", Evidence.MEASURED, run_to_run=1.25)
    assert "significant" in value_regressed(tight, _value(_noisy(10.0, cv=0.01)), _value(_noisy(11.5, cv=0.01, seed=1)))


# ------------------------------------------------------------------ borderline flips
DECODE = "PX.tf_decode_speed"  # track_tf_over_flax[phase=decode] >= 1.0


def _flip(regs):
    (flip,) = [r for r in regs if r.criterion_id == DECODE and r.what == "verdict"]
    return flip


def test_a_verdict_that_crosses_its_threshold_within_the_noise_is_borderline(tmp_results):
    """The decode ratio reads 1.02 then 0.98 with 3% noise: FAIL now, but 4% is inside asv's factor, so the
    flip is listed as BORDERLINE and not counted; a drop to 0.85 on tight samples is a regression."""
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=1), _noisy(1.02, cv=0.03, seed=2)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"samples": [_noisy(1.25, seed=3), _noisy(0.98, cv=0.03, seed=4)]}})
    add_commit(tmp_results, SHA_E, 1700000500000, {RATIO: {"samples": [_noisy(1.25, seed=5), _noisy(0.85, cv=0.01, seed=6)]}})
    c3, d4, e5 = _history(tmp_results)[2:]
    assert c3[DECODE].verdict is Verdict.PASS and d4[DECODE].verdict is Verdict.FAIL  # the flip is real
    borderline = _flip(regressions(c3, d4))
    assert borderline.borderline and borderline.label == "BORDERLINE"
    assert "within asv's factor 1.1" in borderline.detail and "FAIL stands" in borderline.detail
    assert counted(regressions(c3, d4)) == []
    dropped = _flip(regressions(c3, e5))
    assert not dropped.borderline and dropped.label == "REGRESSION" and dropped in counted(regressions(c3, e5))


def test_a_deterministic_value_crossing_its_threshold_is_always_a_regression(tmp_results):
    """Without spread a value cannot be noise: 1.02 -> 0.98 recorded once each is the code's doing."""
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"values": [1.25, 1.02]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"values": [1.25, 0.98]}})
    c3, d4 = _history(tmp_results)[2:]
    flip = _flip(regressions(c3, d4))
    assert not flip.borderline and within_the_noise(c3[DECODE], d4[DECODE]) is None


def test_a_verdict_lost_to_a_missing_value_is_never_borderline(tmp_results):
    add_commit(tmp_results, SHA_C, 1700000300000, {RATIO: {"samples": [_noisy(1.25, seed=1), _noisy(1.02, cv=0.03, seed=2)]}})
    add_commit(tmp_results, SHA_D, 1700000400000, {RATIO: {"values": [1.25, None]}})
    c3, d4 = _history(tmp_results)[2:]
    assert d4[DECODE].verdict is not Verdict.PASS
    assert not _flip(regressions(c3, d4)).borderline


def test_a_once_per_process_timing_is_borderline_inside_its_declared_range(tmp_results):
    """A check that declares run_to_run is judged by that range when it flips: 13.9 -> 16 s against a
    limit of 15 s is inside x1.25, 13.9 -> 18 s is not."""
    from harness.roadmap.validate import CheckResult, CriterionResult

    timing = Check("b.C.track_first_step_seconds", Comparator.LT, 15.0, "seconds", Evidence.MEASURED, run_to_run=1.25)

    def at(sha, value, verdict):
        res = CheckResult(timing, verdict, value, version="1", measured_at=sha,
                          compared=Value(Status.OK, value, version="1", measured_at=sha),
                          compared_name=timing.benchmark)
        return {"P.x": CriterionResult("P.x", sha, verdict, (res,))}

    before = at(SHA_C, 13.9, Verdict.PASS)
    (inside,) = regressions(before, at(SHA_D, 16.0, Verdict.FAIL))
    assert inside.borderline and "run-to-run range x1.25" in inside.detail
    (beyond,) = [r for r in regressions(before, at(SHA_D, 18.0, Verdict.FAIL)) if r.what == "verdict"]
    assert not beyond.borderline
