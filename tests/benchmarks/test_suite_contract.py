"""The asv suite in benchmarks/ honours the bindings of harness.roadmap.criteria.

The suite is read by asv's own discovery (``harness.roadmap.suite.discover``: the records ``asv run`` writes
into benchmarks.json), never by a re-implementation of it, and never against a second table:

* every benchmark a ``Check`` of ``harness.roadmap.criteria.BINDINGS`` reads exists, with the parameter names
  and values (asv records their ``repr``) the check selects and the check's unit;
* every benchmark in the suite is read by at least one ``Check`` (a number no criterion reads is noise), or is
  the regression gate's calibrated twin of one (``GATE_TWINS``);
* every benchmark has a ``pretty_name``, a docstring naming a criterion it serves, and a ``version``.

Discovery imports the benchmark modules and instantiates their classes, as asv does; nothing is built
(no setup runs).
"""

from __future__ import annotations

import re

import pytest

from harness import roadmap
from harness.roadmap import suite
from harness.roadmap.criteria import BINDINGS, GATE_TWINS, check_bindings

SUITE = suite.discover()
READ_BY_CHECKS = {check.benchmark for binding in BINDINGS.values() for check in binding.checks}
CHECKS = {c.benchmark: c for binding in BINDINGS.values() for c in binding.checks}
CRITERION_ID = re.compile(r"\b(?:P\d|QA|PX)\.[a-z0-9_]+\b")


def test_suite_is_not_empty():
    assert SUITE, "benchmarks/ defines no benchmark"


def test_bindings_hold_against_the_suite_asv_discovers():
    check_bindings(BINDINGS, SUITE)


@pytest.mark.parametrize("name", sorted(READ_BY_CHECKS | set(GATE_TWINS.values())))
def test_contract_benchmark_exists_with_its_params_and_unit(name):
    assert name in SUITE, f"{name} is read by harness.roadmap.criteria but not in benchmarks/"
    got = SUITE[name]
    for binding in BINDINGS.values():
        for check in (c for c in binding.checks if c.benchmark == name):
            assert [n for n, _ in check.params] == list(got.param_names), f"{name}: param names"
            for (pname, value), values in zip(check.params, got.params):
                assert repr(value) in values, f"{name}: {pname}={value!r} is not one of {values}"
            assert got.unit == check.unit, f"{name}: unit {got.unit!r}, the check says {check.unit!r}"


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_benchmark_serves_a_criterion(name):
    assert name in READ_BY_CHECKS | set(GATE_TWINS.values()), (
        f"{name}: no Check in BINDINGS reads it, nor is it the regression gate's twin of one (GATE_TWINS)")


@pytest.mark.parametrize("name", sorted(SUITE))
def test_every_benchmark_declares_a_version(name):
    """asv hygiene: a declared ``version`` (not asv's hash of the source), so an edit of a helper it calls does
    not silently start a new series, and a deliberate change of what is measured does (by bumping it)."""
    from asv_runner.discovery import get_benchmark_from_name

    bench = get_benchmark_from_name(str(suite.benchmark_dir()), name)
    # asv's lookup order: the method, then its class (every benchmark here is a method)
    declared = next((getattr(src, "version") for src in (bench.func, bench.func.__self__) if hasattr(src, "version")),
                    None)
    assert declared is not None, f"{name} declares no version; add `version = \"1\"` to its class or method"
    assert SUITE[name].version == str(declared)


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_benchmark_is_labelled(name):
    got = SUITE[name]
    assert got.pretty_name, f"{name} has no pretty_name"
    ids = set(CRITERION_ID.findall(suite.doc_of(name)))
    assert ids, f"{name}: its docstring names no criterion id (e.g. P1.mla_kv_reduction)"
    unknown = ids - set(roadmap.all_criteria())
    assert not unknown, f"{name}: docstring names unknown criteria {sorted(unknown)}"

