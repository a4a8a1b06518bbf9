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


@pytest.mark.parametrize("t, s", [(1, 16), (2, 24), (64, 64), (65, 65), (256, 256), (200, 300), (130, 1024)])
def test_query_blocks_give_each_query_every_key_it_may_see(t, s):
    """Blocks tile the T queries in order, at most _QUERY_BLOCK each; a block's key count covers its last
    query at the latest start the read allows (start = S - T) and never exceeds S."""
    from tf_impl.attention import _QUERY_BLOCK, query_blocks

    blocks = query_blocks(t, s)
    assert blocks[0][0] == 0 and blocks[-1][1] == t
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    for first, end, keys in blocks:
        assert 0 < end - first <= _QUERY_BLOCK
        assert (s - t) + (end - 1) + 1 <= keys <= s


def test_query_blocks_skip_most_of_a_prefills_masked_half():
    from tf_impl.attention import query_blocks

    computed = sum((end - first) * keys for first, end, keys in query_blocks(256, 256))
    assert computed / 256**2 == (1 + 2 + 3 + 4) / 16   # 62.5% of the square, against 100% unblocked


@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_blocked_queries_give_the_unblocked_logits(eager_model, tokens, mode, monkeypatch):
    """Blocks of 4 queries: the forward (12 queries, 3 blocks) and a prefill continuing a 3-token cache
    (9 queries, whose blocks must also see the 3 cached keys) give the one-block logits."""
    import tf_impl.attention as attention
    from harness.interop.tolerances import TOLERANCES

    def run():
        cache = eager_model.new_cache(tokens.shape[0], mode)
        _, cache = eager_model.prefill(tokens[:, :3], cache)
        return eager_model(tokens).numpy(), eager_model.prefill(tokens[:, 3:], cache)[0].numpy()

    one_block = run()
    monkeypatch.setattr(attention, "_QUERY_BLOCK", 4)
    assert [keys for _, _, keys in attention.query_blocks(9, 12)] == [7, 11, 12]
    tol = TOLERANCES["logits"]
    for blocked, whole in zip(run(), one_block):
        np.testing.assert_allclose(blocked, whole, atol=tol.atol, rtol=tol.rtol)
