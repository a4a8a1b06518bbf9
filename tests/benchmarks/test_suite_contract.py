"""The asv suite in benchmarks/ honours the contract of harness.roadmap.criteria.

* every benchmark in ``harness.roadmap.criteria.BENCHMARKS`` exists, with the same parameter names and
  values (asv records their ``repr``) and the same unit;
* every benchmark in the suite is in ``BENCHMARKS`` and is read by at least one ``Check`` of
  ``harness.roadmap.criteria.BINDINGS`` (a number no criterion reads is noise);
* every benchmark has a ``pretty_name`` and a docstring naming a criterion it serves.

Discovery imports the benchmark modules and inspects their classes, as asv does; nothing is built
(TensorFlow and JAX are only imported inside setup functions).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil
import re
from dataclasses import dataclass
from typing import Any

import pytest

import benchmarks
from harness import roadmap
from harness.roadmap.criteria import BENCHMARKS, BINDINGS

PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")
UNITS = {"time_": "seconds", "timeraw_": "seconds", "peakmem_": "bytes", "mem_": "bytes"}


@dataclass(frozen=True)
class Found:
    name: str
    params: tuple[tuple[str, tuple[Any, ...]], ...]
    unit: str
    pretty_name: str | None
    doc: str


def _attr(func, cls, name, default=None):
    """asv's lookup order for benchmark attributes: the method, then its class."""
    for source in (func, cls):
        if hasattr(source, name):
            return getattr(source, name)
    return default


def discover() -> dict[str, Found]:
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or cls_name.startswith("_"):
                continue
            for meth_name, func in inspect.getmembers(cls, inspect.isfunction):
                prefix = next((p for p in PREFIXES if meth_name.startswith(p)), None)
                if prefix is None:
                    continue
                names = _attr(func, cls, "param_names", [])
                values = _attr(func, cls, "params", [])
                name = f"{info.name}.{cls_name}.{meth_name}"
                found[name] = Found(name, tuple(zip(names, (tuple(v) for v in values))),
                                    _attr(func, cls, "unit", UNITS.get(prefix)),
                                    getattr(func, "pretty_name", None), inspect.getdoc(func) or "")
    return found


SUITE = discover()
READ_BY_CHECKS = {check.benchmark for binding in BINDINGS.values() for check in binding.checks}
GATE_TWINS = {BENCHMARKS[name].gate_on for name in READ_BY_CHECKS if name in BENCHMARKS and BENCHMARKS[name].gate_on}
CRITERION_ID = re.compile(r"\b(?:P\d|QA|PX)\.[a-z0-9_]+\b")


def test_suite_is_not_empty():
    assert SUITE, "benchmarks/ defines no benchmark"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_contract_benchmark_exists_with_its_params_and_unit(name):
    spec = BENCHMARKS[name]
    assert name in SUITE, f"{name} is in harness.roadmap.criteria.BENCHMARKS but not in benchmarks/"
    got = SUITE[name]
    assert [n for n, _ in got.params] == list(spec.param_names), f"{name}: param names"
    for (pname, values), (_, expected) in zip(got.params, spec.params):
        assert [repr(v) for v in values] == [repr(v) for v in expected], f"{name}: values of {pname}"
    assert got.unit == spec.unit, f"{name}: unit {got.unit!r}, contract says {spec.unit!r}"


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_benchmark_serves_a_criterion(name):
    assert name in BENCHMARKS, f"{name} is not in harness.roadmap.criteria.BENCHMARKS; extend the contract or drop it"
    assert name in READ_BY_CHECKS | GATE_TWINS, (f"{name} is in BENCHMARKS but no Check in BINDINGS reads it, "
                                                 f"nor is it the regression gate's twin of one (gate_on)")


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_benchmark_is_labelled(name):
    got = SUITE[name]
    assert got.pretty_name, f"{name} has no pretty_name"
    ids = set(CRITERION_ID.findall(got.doc))
    assert ids, f"{name}: its docstring names no criterion id (e.g. P1.mla_kv_reduction)"
    unknown = ids - set(roadmap.all_criteria())
    assert not unknown, f"{name}: docstring names unknown criteria {sorted(unknown)}"


def test_parameter_combinations_are_few():
    """Each combination is one asv process (a TF/JAX import): keep the main job inside its time budget. The
    full tier (classes named *Full) is left out of the main job, so it does not count here."""
    main_job = [f for f in SUITE.values() if not f.name.split(".")[1].endswith("Full")]
    combos = sum(len(list(itertools.product(*(v for _, v in f.params)))) for f in main_job)
    assert combos <= 60, f"{combos} benchmark processes; the suite must run in under 15 minutes"
