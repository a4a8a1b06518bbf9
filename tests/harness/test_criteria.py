"""Every criterion is bound, and every binding names a known benchmark and parameter values."""

import pytest

from harness import roadmap
from harness.criteria import (BENCHMARKS, BINDINGS, Binding, BindingError, Check, Comparator, Evidence,
                              check_bindings)


def test_bindings_are_consistent():
    check_bindings()


def test_every_roadmap_criterion_is_bound_and_every_binding_is_in_the_roadmap():
    assert set(BINDINGS) == set(roadmap.all_criteria())


def test_every_benchmark_in_the_table_answers_a_criterion():
    """Each benchmark is read by a check, or is the calibrated twin the regression gate compares for one."""
    used = {c.benchmark for b in BINDINGS.values() for c in b.checks}
    twins = {BENCHMARKS[name].gate_on for name in used if BENCHMARKS[name].gate_on}
    assert used | twins == set(BENCHMARKS) and not used & twins


def test_benchmark_names_are_module_class_method():
    for name in BENCHMARKS:
        module, cls, method = name.split(".")
        assert module.startswith("bench_") and cls[0].isupper() and method.startswith(("track_", "time_", "peakmem_"))


def test_not_measured_reasons_are_concrete():
    for cid, b in BINDINGS.items():
        if b.not_measured:
            assert len(b.not_measured.reason) > 20, cid


def test_check_bindings_reports_unknown_benchmark_and_param():
    bad = dict(BINDINGS)
    bad["PX.moe_sparsity"] = Binding("PX.moe_sparsity", checks=(
        Check("bench_nope.Nope.track_x", Comparator.LE, 1, "ratio", Evidence.MEASURED),))
    bad["PX.tf_decode_speed"] = Binding("PX.tf_decode_speed", checks=(
        Check("bench_throughput.Throughput.track_tf_over_flax", Comparator.GE, 1, "ratio", Evidence.MEASURED,
              (("phase", "train"),)),))
    with pytest.raises(BindingError, match="bench_nope.Nope.track_x is not in BENCHMARKS") as exc:
        check_bindings(bad)
    assert "phase='train'" in str(exc.value)


def test_check_bindings_reports_a_missing_gate_twin():
    import dataclasses

    benchmarks = dict(BENCHMARKS)
    name = "bench_data.DataPipeline.track_tokens_per_second"
    benchmarks[name] = dataclasses.replace(benchmarks[name], gate_on="bench_data.DataPipeline.track_gone")
    with pytest.raises(BindingError, match="gate_on twin bench_data.DataPipeline.track_gone is not in BENCHMARKS"):
        check_bindings(BINDINGS, benchmarks)


@pytest.mark.parametrize("comparator,value,expect", [
    (Comparator.LT, 0.04, True), (Comparator.LT, 0.05, False), (Comparator.LE, 0.05, True),
    (Comparator.GT, 0.05, False), (Comparator.GE, 0.05, True), (Comparator.EQ, 0.05, True),
    (Comparator.EQ, 0.0500001, False), (Comparator.WITHIN, 0.055, True), (Comparator.WITHIN, 0.07, False),
])
def test_comparators(comparator, value, expect):
    check = Check("b.C.track_x", comparator, 0.05, "u", Evidence.MEASURED, tolerance=0.01)
    assert check.holds(value) is expect
