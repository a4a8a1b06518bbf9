"""The kernel storage layout: weights stored [I, O], the canonical state [O, I] (tf_impl/linear.py says why)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from harness.config import ModelConfig
from tf_impl.linear import Linear, Slot, init_weight
from tf_impl.model import Transformer


def test_a_linear_stores_the_transpose_of_the_canonical_draw_and_computes_x_at_w():
    layer = Linear(6, 4, rng=np.random.default_rng(7))
    canonical = init_weight(np.random.default_rng(7), (4, 6), 6)  # [O, I], the draw a seed fixes
    assert layer.weight.shape == (6, 4)
    np.testing.assert_array_equal(layer.weight.numpy(), canonical.T)
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(layer(tf.constant(x)).numpy(), x @ canonical.T, rtol=1e-6, atol=1e-6)
    slot = layer.params("p")["p.weight"]
    assert slot.transposed and slot.index is None
    np.testing.assert_array_equal(slot.canonical(layer.weight.numpy()), canonical)


def test_a_slot_of_a_stacked_variable_reads_and_writes_one_canonical_slice():
    stack = tf.Variable(np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5))  # [E, I, O]
    slot = Slot(stack, 1, transposed=True)
    canonical = slot.canonical(stack.numpy())                                   # [O, I] of expert 1
    assert canonical.shape == (5, 3)
    np.testing.assert_array_equal(canonical, stack.numpy()[1].T)
    np.testing.assert_array_equal(slot.stored(canonical), stack.numpy()[1])


def test_every_2d_weight_but_wkv_b_the_embedding_and_the_gate_is_stored_transposed():
    for fp8 in ("fp32", "fp8"):
        model = Transformer(ModelConfig.tiny(dtype=fp8), seed=0, compiled=False)
        state = model.state_dict()
        for name, slot in model.named_variables().items():
            canonical_shape = state[name].shape
            stored = slot.var.shape[1:] if slot.index is not None else slot.var.shape
            expect_transposed = len(canonical_shape) == 2 and not name.endswith(
                ("embed.weight", "gate.weight", "wkv_b.weight"))
            assert slot.transposed == expect_transposed, (fp8, name)
            assert tuple(stored) == (canonical_shape[::-1] if expect_transposed else canonical_shape), (fp8, name)


def test_the_canonical_state_round_trips_bit_exactly_through_the_stored_layout():
    src = Transformer(ModelConfig.tiny(), seed=0, compiled=False)
    state = src.state_dict()
    expert = "layers.1.ffn.experts.3.w2.weight"
    state[expert] = state[expert] + np.arange(state[expert].size, dtype=np.float32).reshape(state[expert].shape)
    dst = Transformer(ModelConfig.tiny(), seed=5, compiled=False)
    dst.load_state_dict(state)
    back = dst.state_dict()
    assert all(np.array_equal(back[k], v) for k, v in state.items())
