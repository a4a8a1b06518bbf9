"""Verdicts, regressions and progress on the fixture results."""

import pytest

from harness.criteria import BINDINGS, Binding, Check, Comparator, Evidence
from harness.results import load_benchmarks, load_machine
from harness.gate import regressions
from harness.validate import Verdict, evaluate, evaluate_history, is_failing, milestone_progress, phase_progress
from tests.harness.conftest import MACHINE


@pytest.fixture
def history(results_dir):
    return evaluate_history(load_machine(results_dir, MACHINE), load_benchmarks(results_dir))


def test_older_commit_passes_every_measured_criterion(history):
    old = history[0]
    for cid, res in old.items():
        expected = Verdict.NOT_MEASURED if BINDINGS[cid].not_measured else Verdict.PASS
        assert res.verdict is expected, (cid, res.reason)
    assert not is_failing(old)


def test_verdicts_of_newer_commit(history):
    new = history[1]
    assert new["PX.tf_prefill_speed"].verdict is Verdict.PASS            # 1.1 >= 1.0
    assert new["PX.tf_decode_speed"].verdict is Verdict.FAIL             # 0.8 < 1.0
    assert new["PX.tf_decode_speed"].checks[0].value == 0.8
    ftr = new["P1.synthetic_tests"]
    assert ftr.verdict is Verdict.FAILED_TO_RUN                           # null, though routing passed
    assert "gate.bias" in ftr.checks[0].stderr and ftr.checks[1].verdict is Verdict.PASS
    skipped = new["P2.moe_balance"]
    assert skipped.verdict is Verdict.NOT_MEASURED and "SKIPPED" in skipped.reason
    stale = new["P4.data_throughput"]  # not run at b2b2b2b2: a1a1a1a1's value stands in, marked stale
    assert stale.verdict is Verdict.PASS and stale.checks[0].value == 250000.0
    assert stale.checks[0].stale and stale.checks[0].measured_at.startswith("a1a1a1a1")
    assert "stale: measured at a1a1a1a1" in stale.reason and not stale.checks[0].measured_here
    assert new["P3.scale_64_gpus"].verdict is Verdict.NOT_MEASURED and "64 GPUs" in new["P3.scale_64_gpus"].reason
    assert is_failing(new)


def test_failing_context_check_does_not_decide(results_dir):
    commit = load_machine(results_dir, MACHINE)[0]
    bindings = dict(BINDINGS)
    bindings["P1.fp8_stable"] = Binding("P1.fp8_stable", checks=(
        BINDINGS["P1.fp8_stable"].checks[0],
        Check("bench_fp8.FP8.track_logits_rel_error", Comparator.LE, 0.001, "fraction", Evidence.MEASURED, gate=False),
    ))
    res = evaluate(commit, load_benchmarks(results_dir), bindings)["P1.fp8_stable"]
    assert res.checks[1].verdict is Verdict.FAIL and res.verdict is Verdict.PASS


def test_unknown_benchmark_is_not_measured_never_pass(results_dir):
    commit = load_machine(results_dir, MACHINE)[0]
    bindings = dict(BINDINGS)
    bindings["PX.moe_sparsity"] = Binding("PX.moe_sparsity", checks=(
        Check("bench_new.New.track_y", Comparator.LE, 1.5, "ratio", Evidence.MEASURED),))
    res = evaluate(commit, load_benchmarks(results_dir), bindings)["PX.moe_sparsity"]
    assert res.verdict is Verdict.NOT_MEASURED and "unknown benchmark" in res.reason


def test_regressions_between_commits(history):
    regs = {(r.criterion_id, r.what) for r in regressions(history[0], history[1])}
    assert ("PX.tf_decode_speed", "verdict") in regs                                # PASS -> FAIL
    assert ("P1.synthetic_tests", "verdict") in regs                                # PASS -> FAILED-TO-RUN
    assert ("P2.moe_balance", "verdict") in regs                                    # PASS -> NOT MEASURED (NaN)
    assert not any(cid == "P4.data_throughput" for cid, _ in regs)                  # not run: stale, not lost
    assert ("PX.tf_prefill_speed", "track_tf_over_flax[phase=prefill]") in regs      # 1.3 -> 1.1, still passing
    assert ("PX.tf_decode_speed", "track_tf_over_flax[phase=decode]") in regs
    assert not any(cid == "P1.mla_kv_reduction" for cid, _ in regs)                  # unchanged
    assert regressions(history[1], history[0]) == []                                 # improvements only


def test_milestone_complete_only_when_all_measurable_pass(history):
    old = {m.milestone_id: m for m in milestone_progress(history[0])}
    new = {m.milestone_id: m for m in milestone_progress(history[1])}
    assert old["M1"].complete and not new["M1"].complete
    assert old["M0"].complete and old["M0"].not_measured_by_design == 2             # shown, not counted
    assert not old["M3"].complete and old["M3"].measurable == 0                      # nothing measurable
    assert new["M4"].unmeasured == 0 and new["M4"].complete  # the data pipeline's stale value still PASSes
    phases = {p.phase_id: p for p in phase_progress(history[0])}
    assert phases["phase_1"].complete and not phases["phase_5"].complete
    assert not phases["phase_0"].complete  # its tracker milestone has nothing measurable
    assert phases["cross-phase"].measurable == 7


def test_a_new_benchmark_version_starts_a_new_series(history):
    """A benchmark whose asv version changed measures something else: its value moving is no regression,
    while a verdict that broke (PASS -> FAIL) still is."""
    import dataclasses

    def bump(results):
        out = {}
        for cid, res in results.items():
            checks = tuple(dataclasses.replace(
                c, version=(c.version or "") + "-v2",
                compared=c.compared and dataclasses.replace(c.compared, version=(c.compared.version or "") + "-v2"))
                for c in res.checks)
            out[cid] = dataclasses.replace(res, checks=checks)
        return out

    regs = {(r.criterion_id, r.what) for r in regressions(history[0], bump(history[1]))}
    assert ("PX.tf_prefill_speed", "track_tf_over_flax[phase=prefill]") not in regs   # value moved, new series
    assert ("PX.tf_decode_speed", "verdict") in regs                                  # PASS -> FAIL still counts
