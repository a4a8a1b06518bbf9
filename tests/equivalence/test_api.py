"""The TF model and the Flax reference answer the same public API (ARCHITECTURE.md, "Public API").

A benchmark or test takes either framework as a parameter, so every call of the contract must bind
the same way on both: same method names, and for each parameter the contract uses, the same name,
position and default. A framework may add a trailing keyword with a default (TF's ``generate(mode=)``),
which no contract call passes. Only signatures are inspected; nothing is built.
"""

import inspect

import pytest

import reference
import tf_impl

# (method, positional arguments the contract passes, keyword arguments it passes)
CONTRACT_CALLS = [
    ("__init__", ("cfg",), {"seed": 0}),
    ("__call__", ("tokens",), {}),
    ("state_dict", (), {}),
    ("load_state_dict", ("state",), {}),
    ("new_cache", ("batch_size",), {"mode": "absorb"}),
    ("prefill", ("tokens", "cache"), {}),
    ("decode_step", ("next_tokens", "cache"), {}),
    ("generate", ("prompt", "max_new_tokens"), {"temperature": 0.0, "seed": 0}),
    # beyond ARCHITECTURE.md: what speculative decoding and the benchmarks use instead of private members
    ("hidden_states", ("tokens", "cache"), {"start": 0}),
    ("logits", ("h",), {}),
    ("rope_at", ("start", "t"), {}),
    ("check_tokens", ("tokens",), {"what": "prompt", "rank": 2}),
]
MODELS = {"tf_impl": tf_impl.Transformer, "reference": reference.Transformer}


def _signature(cls, method):
    return inspect.signature(getattr(cls, method))


@pytest.mark.parametrize("method,args,kwargs", CONTRACT_CALLS, ids=[c[0] for c in CONTRACT_CALLS])
def test_contract_call_binds_the_same_on_both(method, args, kwargs):
    bound = {}
    for name, cls in MODELS.items():
        sig = _signature(cls, method)
        try:
            b = sig.bind("self", *args, **kwargs)
        except TypeError as exc:
            pytest.fail(f"{name}.Transformer.{method}{sig} does not accept the contract call: {exc}")
        bound[name] = {k: v for k, v in b.arguments.items() if k != "self"}
    assert bound["tf_impl"] == bound["reference"], f"{method}: parameters bind differently"


@pytest.mark.parametrize("method", [c[0] for c in CONTRACT_CALLS])
def test_shared_parameters_have_the_same_defaults_and_extras_are_optional(method):
    tf_params = _signature(MODELS["tf_impl"], method).parameters
    flax_params = _signature(MODELS["reference"], method).parameters
    shared = [n for n in tf_params if n in flax_params]
    assert shared == [n for n in flax_params if n in tf_params], f"{method}: shared parameters in another order"
    for n in shared:
        assert tf_params[n].default == flax_params[n].default, f"{method}({n}=...): defaults differ"
    for params, other in ((tf_params, flax_params), (flax_params, tf_params)):
        extra = [p for n, p in params.items() if n not in other]
        assert all(p.default is not inspect.Parameter.empty for p in extra), \
            f"{method}: a framework-only parameter must have a default, got {extra}"


def test_both_export_the_model_and_its_cache():
    for module in (tf_impl, reference):
        assert {"Transformer", "KVCache"} <= set(module.__all__), module.__name__
