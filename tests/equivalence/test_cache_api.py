"""The public cache and hidden-state API both models share (docs/internals.md, "Two twins, one vocabulary").

``hidden_states`` at a cache position, ``logits``, ``KVCache.reset``/``truncate`` and ``causal_mask``
replace what code outside the model packages used to reach for in private members (speculative
decoding, the benchmarks' cache resets, the equivalence harness's mask). Each case runs on both
frameworks with the same canonical weights and checks the same numbers.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from harness.config import ModelConfig
from harness.interop.bridge import FRAMEWORKS, build_model

CFG = ModelConfig.tiny(max_seq_len=32)
TOKENS = np.random.default_rng(3).integers(0, CFG.vocab_size, (2, 12)).astype(np.int32)


@functools.lru_cache(maxsize=None)
def model(framework: str):
    if framework == "tf":
        return build_model("tf", CFG, seed=0, compiled=False)
    return build_model("flax", CFG, model("tf").state_dict(), seed=1)  # the same weights in both


@functools.lru_cache(maxsize=None)
def full_logits() -> np.ndarray:
    return np.asarray(model("tf")(TOKENS))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hidden_states_then_logits_is_the_forward(framework):
    m = model(framework)
    h, cache = m.hidden_states(TOKENS)
    assert cache is None and tuple(h.shape) == (*TOKENS.shape, CFG.dim)
    np.testing.assert_allclose(np.asarray(m.logits(h)), full_logits(), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hidden_states_at_a_cache_position_continue_the_sequence(framework):
    m = model(framework)
    cache = m.new_cache(2, "absorb")
    h1, cache = m.hidden_states(TOKENS[:, :7], cache)
    h2, cache = m.hidden_states(TOKENS[:, 7:], cache)
    assert cache.length == TOKENS.shape[1]
    np.testing.assert_allclose(np.asarray(m.logits(np.concatenate([h1, h2], 1))), full_logits(), atol=2e-5, rtol=1e-5)
    # rewrite positions 7.. (a rejected draft): the same tokens give the same states, and the length follows
    again, cache = m.hidden_states(TOKENS[:, 7:9], cache, start=7)
    assert cache.length == 9
    np.testing.assert_allclose(np.asarray(again), np.asarray(h2)[:, :2], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_truncate_and_reset_decode_again_from_the_kept_positions(framework):
    m = model(framework)
    _, cache = m.prefill(TOKENS[:, :10], m.new_cache(2, "naive"))
    first, cache = m.decode_step(TOKENS[:, 10], cache)
    assert cache.length == 11
    cache = cache.truncate(10)
    assert cache.length == 10
    second, cache = m.decode_step(TOKENS[:, 10], cache)
    np.testing.assert_array_equal(np.asarray(second), np.asarray(first))
    np.testing.assert_allclose(np.asarray(second), full_logits()[:, 10], atol=2e-5, rtol=1e-5)
    cache = cache.reset()
    assert cache.length == 0
    logits, cache = m.prefill(TOKENS[:, :4], cache)  # the stale positions 4.. are masked, then overwritten
    np.testing.assert_allclose(np.asarray(logits), full_logits()[:, :4], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("bad", [-1, 12, 2.0, True])
def test_truncate_refuses_a_length_the_cache_does_not_hold(framework, bad):
    m = model(framework)
    _, cache = m.prefill(TOKENS[:, :11], m.new_cache(2, "absorb"))
    with pytest.raises(ValueError, match=r"truncate\(.*\): the length must be an integer in 0\.\.11"):
        cache.truncate(bad)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_start_past_the_cached_positions_is_refused(framework):
    m = model(framework)
    cache = m.new_cache(2, "absorb")
    with pytest.raises(ValueError, match=r"start=3 is outside 0\.\.0.*gap"):
        m.hidden_states(TOKENS[:, :2], cache, start=3)
    with pytest.raises(ValueError, match="start=2 needs a cache"):
        m.hidden_states(TOKENS[:, :2], start=2)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_rope_at_is_the_rows_of_the_tables(framework):
    m = model(framework)
    if framework == "tf":
        from tf_impl.rope import rope_tables
    else:
        from reference.rope import rope_tables
    cos, sin = (np.asarray(t) for t in rope_tables(CFG))
    got_cos, got_sin = m.rope_at(5, 3)
    np.testing.assert_array_equal(np.asarray(got_cos), cos[5:8])
    np.testing.assert_array_equal(np.asarray(got_sin), sin[5:8])
    with pytest.raises(ValueError, match="outside 0..max_seq_len-1=31"):
        m.rope_at(30, 3)


def test_causal_mask_is_the_same_hand_computed_mask_in_both():
    from reference.attention import causal_mask as flax_mask
    from tf_impl.attention import causal_mask as tf_mask

    want = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)  # queries at positions 2 and 3, 5 keys
    np.testing.assert_array_equal(tf_mask(2, 2, 5).numpy(), want)
    np.testing.assert_array_equal(np.asarray(flax_mask(2, 2, 5)), want)
