"""Weight transfer both ways (bit-exact round trips), DLPack zero copy, and jax2tf inside one tf.function."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop import bridge
from harness.interop.tolerances import TOLERANCES
from harness.io import load_safetensors, save_safetensors

CFG = ModelConfig.tiny()


def _assert_bit_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        assert np.array_equal(a[name].view(np.uint32), b[name].view(np.uint32)), name


@pytest.fixture(scope="module")
def tf_model():
    return bridge.build_model("tf", CFG, seed=3, compiled=False)


@pytest.fixture(scope="module")
def flax_model():
    return bridge.build_model("flax", CFG, seed=4)


def test_state_made_by_tf_loads_into_flax_and_back_bit_exact(tf_model, tmp_path):
    state = bridge.export_state(tf_model)
    twin = bridge.transfer(tf_model, "flax")
    _assert_bit_equal(bridge.export_state(twin), state)
    back = bridge.transfer(twin, "tf", compiled=False)
    _assert_bit_equal(bridge.export_state(back), state)
    save_safetensors(state, tmp_path / "tf.safetensors")
    _assert_bit_equal(load_safetensors(tmp_path / "tf.safetensors"), state)


def test_state_made_by_flax_loads_into_tf_and_back_bit_exact(flax_model):
    state = bridge.export_state(flax_model)
    twin = bridge.transfer(flax_model, "tf", compiled=False)
    _assert_bit_equal(bridge.export_state(twin), state)
    _assert_bit_equal(bridge.export_state(bridge.transfer(twin, "flax")), state)


def test_seeds_differ_so_the_round_trips_are_not_vacuous(tf_model, flax_model):
    a, b = bridge.export_state(tf_model), bridge.export_state(flax_model)
    assert not np.array_equal(a["embed.weight"], b["embed.weight"])


def test_unknown_framework_is_named():
    with pytest.raises(ValueError, match="framework 'torch' is unknown"):
        bridge.build_model("torch", CFG)


@pytest.mark.parametrize("n", [1, 7, 4096])
def test_dlpack_tf_to_jax_shares_memory(n):
    import tensorflow as tf

    t = tf.random.stateless_normal([n], seed=[1, 2])
    j = bridge.tf_to_jax(t)
    assert bridge.jax_buffer_address(j) == bridge.tf_buffer_address(t)  # same buffer: no copy
    np.testing.assert_array_equal(np.asarray(j), t.numpy())


@pytest.mark.parametrize("n", [1, 7, 4096])
def test_dlpack_jax_to_tf_shares_memory(n):
    import jax.numpy as jnp

    j = jnp.arange(n, dtype=jnp.float32) * 0.5
    t = bridge.jax_to_tf(j)
    assert bridge.tf_buffer_address(t) == bridge.jax_buffer_address(j)  # same buffer: no copy
    np.testing.assert_array_equal(t.numpy(), np.asarray(j))


def test_dlpack_shares_a_model_weight(tf_model):
    weight = tf_model.head.weight.read_value()  # an eager tensor over the variable's buffer
    j = bridge.tf_to_jax(weight)
    assert bridge.jax_buffer_address(j) == bridge.tf_buffer_address(weight)
    assert j.shape == (CFG.dim, CFG.vocab_size)  # stored [I, O] (tf_impl/linear.py)


def test_tf_and_jax2tf_flax_logits_in_one_tf_function():
    state = bridge.export_state(bridge.build_model("tf", CFG, seed=0, compiled=False))
    tf_model = bridge.build_model("tf", CFG, state, compiled=False)
    flax_model = bridge.build_model("flax", CFG, state)
    tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 16)).astype(np.int32)
    a, b = bridge.tf_and_flax_logits_in_one_tf_function(tf_model, flax_model, tokens)
    assert a.shape == b.shape == (2, 16, CFG.vocab_size)
    tol = TOLERANCES["logits"]
    assert np.abs(a - b).max() <= tol.atol
    np.testing.assert_allclose(b, np.asarray(flax_model(tokens)), atol=tol.atol)
