"""Verdicts, regressions, the success-rate roll-up and progress on the fixture results."""

import pytest

from harness.roadmap.criteria import BINDINGS, Binding, Check, Comparator, Evidence, NotMeasured
from harness.roadmap.gate import regressions
from harness.roadmap.results import load_benchmarks, load_machine
from harness.roadmap.validate import (Verdict, evaluate, evaluate_history, is_failing, milestone_progress, phase_progress,
                                      skip_reason, success_rate)
from tests.harness.conftest import MACHINE


@pytest.fixture
def history(results_dir):
    return evaluate_history(load_machine(results_dir, MACHINE), load_benchmarks(results_dir))


def test_older_commit_passes_every_measured_criterion_but_not_the_success_rate(history):
    old = history[0]
    bound_later = {"P2.expert_parallel_nodes", "P3.optimizer_memory"}  # measured since issue 14; no fixture results
    for cid, res in old.items():
        binding = BINDINGS[cid]
        expected = (Verdict.NOT_MEASURED if binding.not_measured or cid in bound_later
                    else Verdict.NOT_DELIVERED if binding.not_delivered
                    else Verdict.FAIL if binding.derived else Verdict.PASS)
        assert res.verdict is expected, (cid, res.reason)
    assert old["P0.env_conda_tf"].reason.startswith("no conda environment")
    assert is_failing(old)  # only through the roll-up


def test_success_rate_fails_today_computed_from_the_fixture_verdicts(history):
    """40 PASS against 3 NOT DELIVERED (not met) at a1a1a1a1: 40/43 = 0.93, far below the seed's 95%."""
    rate = history[0]["QA.milestone_success_rate"]
    (check,) = rate.checks
    assert check.value == pytest.approx(40 / 43) and rate.verdict is Verdict.FAIL
    assert check.check.evidence is Evidence.DERIVED
    assert "40 of 43 criteria met" in rate.reason and "9 NOT MEASURED left out" in rate.reason
    # b2b2b2b2: FAILED-TO-RUN counts as not met, NOT MEASURED (skipped, missing) is left out, itself too.
    new = history[1]
    counts = success_rate(new, exclude=("QA.milestone_success_rate",)).counts
    assert counts[Verdict.FAILED_TO_RUN] == 1 and counts[Verdict.NOT_DELIVERED] == 3
    counted = sum(counts[v] for v in (Verdict.PASS, Verdict.FAIL, Verdict.FAILED_TO_RUN, Verdict.NOT_DELIVERED))
    assert new["QA.milestone_success_rate"].checks[0].value == pytest.approx(counts[Verdict.PASS] / counted)


def test_success_rate_passes_when_everything_that_counts_passes(results_dir):
    """Had the NOT DELIVERED criteria been merely unmeasurable, the same results would pass the roll-up."""
    commit = load_machine(results_dir, MACHINE)[0]
    bindings = {cid: Binding(cid, not_measured=NotMeasured("test: " + b.not_delivered.reason)) if b.not_delivered
                else b for cid, b in BINDINGS.items()}
    res = evaluate(commit, load_benchmarks(results_dir), bindings)["QA.milestone_success_rate"]
    assert res.verdict is Verdict.PASS and res.checks[0].value == 1.0 and "40 of 40" in res.reason


def test_verdicts_of_newer_commit(history):
    new = history[1]
    assert new["PX.tf_prefill_speed"].verdict is Verdict.PASS            # 1.1 >= 1.0
    assert new["PX.tf_decode_speed"].verdict is Verdict.FAIL             # 0.8 < 1.0
    assert new["PX.tf_decode_speed"].checks[0].value == 0.8
    ftr = new["P0.synthetic_validation"]
    assert ftr.verdict is Verdict.FAILED_TO_RUN                           # null
    assert "gate.bias" in ftr.checks[0].stderr
    skipped = new["P2.moe_balance"]
    assert skipped.verdict is Verdict.NOT_MEASURED and "SKIPPED" in skipped.reason
    stale = new["P4.data_throughput"]  # not run at b2b2b2b2: a1a1a1a1's value stands in, marked stale
    assert stale.verdict is Verdict.PASS and stale.checks[0].value == 250000.0
    assert stale.checks[0].stale and stale.checks[0].measured_at.startswith("a1a1a1a1")
    assert "stale: measured at a1a1a1a1" in stale.reason and not stale.checks[0].measured_here
    # A skip's reason is the message the benchmark's setup raised, as asv printed it.
    coverage = new["QA.coverage"]
    assert coverage.verdict is Verdict.NOT_MEASURED
    assert coverage.reason.startswith("track_test_coverage: SKIPPED: no green test run recorded for this commit")
    tests = new["P1.synthetic_tests"]
    assert tests.verdict is Verdict.NOT_MEASURED and "no test run of the whole default suite recorded" in tests.reason
    assert new["P0.dev_tools"].verdict is Verdict.FAIL                    # pip check found a problem
    assert new["PX.tf_train_speed"].verdict is Verdict.FAIL               # 0.33 < 1
    assert new["P0.env_conda_tf"].verdict is Verdict.NOT_DELIVERED
    assert new["P0.env_cuda"].verdict is Verdict.NOT_MEASURED and "needs a GPU" in new["P0.env_cuda"].reason
    assert new["P3.scale_64_gpus"].verdict is Verdict.NOT_MEASURED and "GPU cluster" in new["P3.scale_64_gpus"].reason
    assert is_failing(new)


def test_failing_context_check_does_not_decide(results_dir):
    commit = load_machine(results_dir, MACHINE)[0]
    bindings = dict(BINDINGS)
    bindings["P1.fp8_stable"] = Binding("P1.fp8_stable", checks=(
        BINDINGS["P1.fp8_stable"].checks[0],
        Check("bench_fp8.FP8StabilityFull.track_logits_rel_error", Comparator.LE, 0.001, "fraction", Evidence.PROXY,
              gate=False),
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
    assert ("P0.synthetic_validation", "verdict") in regs                           # PASS -> FAILED-TO-RUN
    assert ("P1.synthetic_tests", "verdict") in regs              # PASS -> NOT MEASURED (NaN: no test record)
    assert ("P2.moe_balance", "verdict") in regs                                    # PASS -> NOT MEASURED (NaN)
    assert not any(cid == "P4.data_throughput" for cid, _ in regs)                  # not run: stale, not lost
    assert ("PX.tf_prefill_speed", "track_tf_over_flax[phase=prefill]") in regs      # 1.3 -> 1.1, still passing
    assert ("PX.tf_decode_speed", "track_tf_over_flax[phase=decode]") in regs
    assert not any(cid == "P1.mla_kv_reduction" for cid, _ in regs)                  # unchanged
    assert regressions(history[1], history[0]) == []                                 # improvements only


def test_milestone_complete_only_when_every_criterion_passes(history):
    old = {m.milestone_id: m for m in milestone_progress(history[0])}
    new = {m.milestone_id: m for m in milestone_progress(history[1])}
    assert old["M1"].complete and old["M1"].status == "complete" and not new["M1"].complete
    # M0: 3 PASS and P0.tf_gpu NOT MEASURED by design: only the measurable part is complete.
    assert not old["M0"].complete and old["M0"].not_measured_by_design == 1
    assert old["M0"].status == "measurable part complete (1 not measurable here)"
    # The tracker milestone: P0.test_framework and P0.jupyter_workflow pass, but conda is NOT DELIVERED (not met).
    tracker = old["milestone_phase_0"]
    assert tracker.not_delivered == 1 and tracker.passed == 2 and tracker.status == "no"
    # M3: DualPipe and the communication share pass; ZeRO-1 has no fixture value (unmeasured); 64 GPUs by design.
    assert not old["M3"].complete and old["M3"].measurable == 3 and old["M3"].unmeasured == 1
    assert old["M3"].not_measured_by_design == 1 and old["M3"].not_delivered == 0
    # M4 at b2b2b2b2: the data pipeline's stale value still PASSes, and so does P4.uptime (full tier, by proxy).
    assert new["M4"].unmeasured == 0 and new["M4"].complete
    phases = {p.phase_id: p for p in phase_progress(history[0])}
    assert phases["phase_1"].complete and not phases["phase_3"].complete
    assert not phases["phase_0"].complete and phases["phase_0"].status == "no"
    assert phases["cross-phase"].measurable == 15 and phases["cross-phase"].not_delivered == 2


def test_skip_reason_reads_the_message_asv_printed():
    out = "For parameters: 'e2e'\nasv: skipped: NotImplementedError('no test run (abc); run it') \n"
    assert skip_reason(out) == "no test run (abc); run it"
    assert skip_reason("asv: skipped: NotImplementedError(\"the README's command\")") == "the README's command"
    assert skip_reason("Traceback ...\nValueError: x") == ""


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
