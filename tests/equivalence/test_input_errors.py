"""Bad input to either framework's public API gets the same clear error, never a deep traceback or a silent NaN.

Each case is run against ``tf_impl`` and ``reference`` with the same expected message, so the two
implementations cannot drift apart in what they accept.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop.bridge import FRAMEWORKS, build_model

CFG = ModelConfig.tiny()


@functools.lru_cache(maxsize=None)
def model(framework: str, **overrides):
    cfg = CFG.replace(**overrides) if overrides else CFG
    return build_model(framework, cfg, seed=0, **({"compiled": False} if framework == "tf" else {}))


@functools.lru_cache(maxsize=None)
def good_state():
    return model("tf").state_dict()


def _poisoned(name: str, value, dtype=np.float32):
    state = {k: v.copy() for k, v in good_state().items()}
    state[name] = state[name].astype(dtype)
    state[name].flat[3] = value
    return state


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_load_state_dict_refuses_non_finite_weights_naming_the_tensor(framework, value):
    m = model(framework)
    before = m.state_dict()["head.weight"].copy()
    with pytest.raises(ValueError, match=r"(?s)head\.weight.*1 non-finite value.*allow_non_finite=True"):
        m.load_state_dict(_poisoned("head.weight", value))
    assert np.array_equal(m.state_dict()["head.weight"], before)  # nothing was loaded


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_load_state_dict_refuses_float64_that_overflows_float32(framework):
    with pytest.raises(ValueError, match=r"(?s)layers\.0\.attn\.wo\.weight.*1e\+300.*overflows float32"):
        model(framework).load_state_dict(_poisoned("layers.0.attn.wo.weight", 1e300, np.float64))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_non_finite_weights_load_only_behind_the_explicit_flag(framework):
    m = model(framework, n_heads=2)  # a model of its own: the weights loaded here must not leak into other tests
    state = {k: v.copy() for k, v in model("tf", n_heads=2).state_dict().items()}
    state["norm.weight"][0] = np.nan
    m.load_state_dict(state, allow_non_finite=True)
    assert np.isnan(m.state_dict()["norm.weight"][0])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_integer_state_is_refused(framework):
    state = dict(good_state())
    state["norm.weight"] = np.ones(CFG.dim, np.int32)
    with pytest.raises(ValueError, match=r"floating point.*norm\.weight"):
        model(framework).load_state_dict(state)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("bad", [None, [1, 2], "model.safetensors"])
def test_load_state_dict_of_a_non_mapping_is_a_clear_error(framework, bad):
    with pytest.raises(ValueError, match=r"load_state_dict needs a \{tensor name: array\} mapping"):
        model(framework).load_state_dict(bad)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("call", ["forward", "generate"])
def test_ragged_token_list_is_a_clear_error(framework, call):
    ragged = [[1, 2, 3], [4, 5]]
    m = model(framework)
    with pytest.raises(ValueError, match=r"ragged.*lengths \[3, 2\].*pad"):
        m(ragged) if call == "forward" else m.generate(ragged, 2)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("temperature", ["0.5", None, True, float("nan")])
def test_temperature_must_be_a_number(framework, temperature):
    with pytest.raises(ValueError, match=r"temperature must be a number >= 0"):
        model(framework).generate([[1, 2, 3]], 2, temperature=temperature)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cache_made_for_another_config_is_a_clear_error(framework):
    other = model(framework, kv_lora_rank=24)  # same max_seq_len and n_layers, other latent width
    cache = other.new_cache(1, "absorb")
    with pytest.raises(ValueError, match=r"cache was built for another config.*\[1, 64, 24\].*\[1, 64, 16\]"):
        model(framework).prefill(np.array([[1, 2, 3]], np.int32), cache)
