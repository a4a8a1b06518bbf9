"""MLA: cache sizes, naive vs absorbed equality, and cached decoding against the full forward."""

import numpy as np
import pytest

from harness.config import ModelConfig
from tf_impl import cache_bytes_per_token
from tf_impl.attention import KVCache


def test_cache_bytes_per_token_formula():
    cfg = ModelConfig.v3_671b()
    assert cache_bytes_per_token(cfg, "absorb") == 61 * (512 + 64) * 4
    assert cache_bytes_per_token(cfg, "naive") == 61 * 128 * (192 + 128) * 4
    with pytest.raises(ValueError, match="cache mode"):
        cache_bytes_per_token(cfg, "paged")


def test_caches_allocated_at_671b_attention_dims_give_the_mla_reduction():
    """The tensors KVCache allocates at DeepSeek-V3's attention dims (one layer, 4 positions, so that the naive
    cache fits): C + R = 576 elements per token for the absorbed layout, N * (H + R + H) = 40,960 for the naive
    one, and 1 - 576 / (2 * 128 * 128) = 98.2% against a textbook MHA cache of 2 * N * 128 elements."""
    cfg = ModelConfig.v3_671b(n_layers=1, n_dense_layers=1, max_seq_len=4)
    naive, absorb = (KVCache(cfg, 1, mode) for mode in ("naive", "absorb"))
    per_token = {c.mode: c.nbytes // (4 * cfg.max_seq_len) for c in (naive, absorb)}  # fp32 elements per token
    assert per_token == {"absorb": 512 + 64, "naive": 128 * (128 + 64 + 128)}
    assert [v.shape.as_list() for v in absorb.variables] == [[1, 4, 512], [1, 4, 64]]  # one rope key for all heads
    assert 1 - absorb.nbytes / naive.nbytes == pytest.approx(1 - 576 / 40960)
    assert 1 - per_token["absorb"] / (2 * cfg.n_heads * cfg.v_head_dim) == pytest.approx(0.982, abs=5e-4)


@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_cache_reports_allocated_bytes(tiny_cfg, tiny_model, mode):
    cache = tiny_model.new_cache(3, mode)
    assert cache.nbytes == 3 * tiny_cfg.max_seq_len * cache_bytes_per_token(tiny_cfg, mode)
    assert cache.nbytes == sum(v.numpy().nbytes for v in cache.variables)


def _decode_all(model, tokens, mode, n_prefill):
    cache = model.new_cache(tokens.shape[0], mode)
    logits, cache = model.prefill(tokens[:, :n_prefill], cache)
    steps = [logits.numpy()]
    for t in range(n_prefill, tokens.shape[1]):
        step, cache = model.decode_step(tokens[:, t], cache)
        steps.append(step.numpy()[:, None])
    assert cache.length == tokens.shape[1]
    return np.concatenate(steps, 1)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_prefill_then_decode_matches_full_forward(tiny_model, tokens, mode, compiled):
    tiny_model.compiled = compiled
    try:
        full = tiny_model(tokens).numpy()
        np.testing.assert_allclose(_decode_all(tiny_model, tokens, mode, 5), full, rtol=1e-4, atol=1e-4)
    finally:
        tiny_model.compiled = True


def test_token_by_token_from_empty_cache(eager_model, tokens):
    full = eager_model(tokens).numpy()
    np.testing.assert_allclose(_decode_all(eager_model, tokens, "absorb", 1), full, rtol=1e-4, atol=1e-4)


def test_chunked_prefill_continues_from_cache(eager_model, tokens):
    cache = eager_model.new_cache(2, "naive")
    first, cache = eager_model.prefill(tokens[:, :4], cache)
    second, cache = eager_model.prefill(tokens[:, 4:], cache)
    full = eager_model(tokens).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], 1), full, rtol=1e-4, atol=1e-4)


def test_naive_and_absorbed_attention_agree(eager_model, tokens):
    a = _decode_all(eager_model, tokens, "naive", 6)
    b = _decode_all(eager_model, tokens, "absorb", 6)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_q_lora_rank_zero_uses_single_wq():
    from tf_impl import Transformer

    cfg = ModelConfig.tiny(q_lora_rank=0, n_mtp_modules=0)
    model = Transformer(cfg, seed=0, compiled=False)
    assert "layers.0.attn.wq.weight" in model.state_dict()
    toks = np.arange(12, dtype=np.int32).reshape(2, 6)
    np.testing.assert_allclose(_decode_all(model, toks, "absorb", 3), model(toks).numpy(), rtol=1e-4, atol=1e-4)


def test_cache_read_length_buckets():
    """Powers of two and 1.5x powers of two from 16, capped at max_seq_len: never below what is needed,
    never above 1.5x of it (past the first bucket), and few distinct values over a whole decode."""
    from tf_impl.attention import cache_read_length

    assert [cache_read_length(n, 1024) for n in (1, 16, 17, 25, 33, 257, 385, 1000)] == [16, 16, 24, 32, 48, 384, 512,
                                                                                        1024]
    assert cache_read_length(40, 40) == 40
    reads = [cache_read_length(n, 1024) for n in range(1, 1025)]
    assert all(n <= r <= max(16, 1.5 * n) for n, r in zip(range(1, 1025), reads))
    assert len(set(reads)) == 13  # 16, 24, 32, 48, ..., 768, 1024
    with pytest.raises(ValueError, match="needed must be in 1..max_seq_len"):
        cache_read_length(65, 64)


@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_decode_never_reads_slots_past_the_filled_bucket(tiny_model, tokens, mode):
    """NaN written into the cache past the read bucket (16 slots for 13 filled) would poison the output if
    decode read the whole max_seq_len cache (0 * NaN = NaN in the value sum); it reads only the bucket."""
    cache = tiny_model.new_cache(2, mode)
    _, cache = tiny_model.prefill(tokens[:, :-1], cache)
    for var in cache.variables:
        poisoned = var.numpy()
        poisoned[:, 16:] = np.nan
        var.assign(poisoned)
    logits, cache = tiny_model.decode_step(tokens[:, -1], cache)
    np.testing.assert_allclose(logits.numpy(), tiny_model(tokens).numpy()[:, -1], rtol=1e-4, atol=1e-4)
