"""Per-row cache positions: a batch whose rows sit at different lengths decodes as each row alone.

Batched speculative decoding (``tf_impl.speculative``) accepts drafts per sequence, so its rows
advance unevenly; ``Transformer.hidden_states`` inside a compiled step then takes a vector ``start``
[B]. Each row must get exactly what it gets in a batch of one at its own scalar position: the keys it
wrote at its own positions with its own RoPE angles, and none of the slots past them (stale entries
a shorter row has not overwritten yet).
"""

import numpy as np
import pytest
import tensorflow as tf

from harness.config import ModelConfig
from harness.interop.tolerances import TOLERANCES
from tf_impl import Transformer
from tf_impl.attention import KVCache, causal_mask

CFG = ModelConfig.tiny(max_seq_len=32)
LENGTHS = (9, 5, 7)  # each row's prompt; the batch is prefilled to the longest with junk after the shorter ones


def _row_alone(model, prompt, nxt, mode):
    """Logits [T, V] of ``nxt`` [T] after ``prompt`` [n], in a batch of one at scalar positions."""
    cache = model.new_cache(1, mode)
    model.hidden_states(prompt[None], cache)
    h, _ = model.hidden_states(nxt[None], cache)
    return model.logits(h)[0].numpy()


@pytest.mark.parametrize("mode", ["absorb", "naive"])
def test_rows_at_their_own_positions_decode_as_each_row_alone(mode):
    model = Transformer(CFG, seed=0, compiled=False)
    rng = np.random.default_rng(0)
    b, top = len(LENGTHS), max(LENGTHS)
    prompts = rng.integers(0, CFG.vocab_size, (b, top)).astype(np.int32)  # row i's prompt: its first LENGTHS[i]
    nxt = rng.integers(0, CFG.vocab_size, (b, 2)).astype(np.int32)
    cache = model.new_cache(b, mode)
    model.hidden_states(prompts, cache)  # shorter rows hold junk in slots LENGTHS[i]..top-1

    @tf.function
    def step(tokens, start):
        h, _ = model.hidden_states(tokens, cache, start, read_len=CFG.max_seq_len)
        return model.logits(h)

    got = step(tf.constant(nxt), tf.constant(LENGTHS, tf.int32)).numpy()  # [B, 2, V]
    tol = TOLERANCES["decode_logits"]
    for i, n in enumerate(LENGTHS):
        want = _row_alone(model, prompts[i, :n], nxt[i], mode)
        np.testing.assert_allclose(got[i], want, rtol=tol.rtol, atol=tol.atol, err_msg=f"row {i} at {n}")


def test_rows_junk_is_what_the_mask_hides():
    """The control: the same step with one scalar start (the longest row's) differs for the shorter rows."""
    model = Transformer(CFG, seed=0, compiled=False)
    rng = np.random.default_rng(1)
    prompts = rng.integers(0, CFG.vocab_size, (2, 9)).astype(np.int32)
    nxt = rng.integers(0, CFG.vocab_size, (2, 1)).astype(np.int32)
    cache = model.new_cache(2, "absorb")
    model.hidden_states(prompts, cache)
    h, _ = model.hidden_states(nxt, cache, start=9)
    want = _row_alone(model, prompts[1, :5], nxt[1], "absorb")
    assert not np.allclose(model.logits(h)[1].numpy(), want, atol=1e-3)


def test_per_row_causal_mask():
    mask = causal_mask(tf.constant([2, 0]), 2, 4).numpy()  # [B, T, S]
    assert mask.shape == (2, 2, 4)
    assert mask[0].tolist() == [[True, True, True, False], [True, True, True, True]]
    assert mask[1].tolist() == [[True, False, False, False], [True, True, False, False]]
    assert causal_mask(1, 2, 4).numpy().tolist() == [[True, True, False, False], [True, True, True, False]]


def test_per_row_rope_angles_are_each_rows_own():
    model = Transformer(CFG, seed=0, compiled=False)
    cos, sin = model.rope_at(tf.constant([3, 10]), 2)  # [B, T, R/2]
    assert cos.shape == (2, 2, CFG.qk_rope_head_dim // 2)
    for row, start in enumerate((3, 10)):
        c, s = model.rope_at(start, 2)
        np.testing.assert_array_equal(cos[row].numpy(), c.numpy())
        np.testing.assert_array_equal(sin[row].numpy(), s.numpy())
