import numpy as np
import pytest

from harness.config import ModelConfig
from reference import Transformer
from reference.attention import cache_bytes_per_token


@pytest.mark.parametrize("mode", ["absorb", "naive"])
def test_cached_decode_matches_full_forward_at_every_position(tiny_model, tokens, mode):
    full = np.asarray(tiny_model(tokens))  # (B, T, V)
    cache = tiny_model.new_cache(tokens.shape[0], mode)
    # absorb also prefills a second chunk, which attends to cached keys
    chunks = [(0, 6), (6, 8)] if mode == "absorb" else [(0, 6)]
    for lo, hi in chunks:
        logits, cache = tiny_model.prefill(tokens[:, lo:hi], cache)
        np.testing.assert_allclose(np.asarray(logits), full[:, lo:hi], atol=2e-5, rtol=1e-5)
    for t in range(chunks[-1][1], tokens.shape[1]):
        step, cache = tiny_model.decode_step(tokens[:, t], cache)
        np.testing.assert_allclose(np.asarray(step), full[:, t], atol=2e-5, rtol=1e-5, err_msg=f"position {t}")
    assert cache.length == tokens.shape[1]


def test_naive_equals_absorbed_without_q_lora():
    cfg = ModelConfig.tiny(q_lora_rank=0, n_layers=1, n_dense_layers=1, n_mtp_modules=0)
    model = Transformer(cfg, seed=3)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (3, 9))
    naive, _ = model.prefill(tokens, model.new_cache(3, "naive"))
    absorbed, _ = model.prefill(tokens, model.new_cache(3, "absorb"))
    np.testing.assert_allclose(np.asarray(naive), np.asarray(absorbed), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(naive), np.asarray(model(tokens)), atol=2e-5, rtol=1e-5)


def test_future_tokens_do_not_change_the_past(tiny_model, tokens):
    changed = tokens.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % 256
    np.testing.assert_allclose(np.asarray(tiny_model(changed))[:, :7], np.asarray(tiny_model(tokens))[:, :7],
                               atol=1e-6)


def test_cache_shapes_and_bytes():
    cfg = ModelConfig.v3_671b()
    assert cache_bytes_per_token(cfg, "absorb") == 61 * 576 * 4
    assert cache_bytes_per_token(cfg, "naive") == 61 * 128 * (192 + 128) * 4
    tiny = ModelConfig.tiny()
    model = Transformer(tiny)
    absorb, naive = model.new_cache(2, "absorb"), model.new_cache(2, "naive")
    assert absorb.layers[0]["kv"].shape == (2, tiny.max_seq_len, tiny.kv_lora_rank)
    assert absorb.layers[0]["pe"].shape == (2, tiny.max_seq_len, tiny.qk_rope_head_dim)
    assert naive.layers[0]["k"].shape == (2, tiny.max_seq_len, tiny.n_heads, tiny.qk_head_dim)
    assert naive.layers[0]["v"].shape == (2, tiny.max_seq_len, tiny.n_heads, tiny.v_head_dim)
    with pytest.raises(ValueError, match="cache mode"):
        model.new_cache(1, "paged")


@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_decode_never_reads_slots_past_the_filled_bucket(tiny_model, tokens, mode):
    """As tf_impl's: NaN past the read bucket (16 slots for 13 filled) would poison a full-cache read
    (0 * NaN in the value sum); decode reads only the bucket, so its logits stay the forward's."""
    import dataclasses

    import jax.numpy as jnp

    from reference.attention import read_length

    assert [read_length(n, 1024) for n in (1, 17, 25, 257, 1000)] == [16, 24, 32, 384, 1024]
    _, cache = tiny_model.prefill(tokens[:, :-1], tiny_model.new_cache(2, mode))
    poisoned = [{k: v.at[:, 16:].set(jnp.nan) for k, v in layer.items()} for layer in cache.layers]
    logits, _ = tiny_model.decode_step(tokens[:, -1], dataclasses.replace(cache, layers=poisoned))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(tiny_model(tokens))[:, -1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["naive", "absorb"])
def test_blocked_queries_give_the_unblocked_logits(tiny_model, tokens, mode, monkeypatch):
    """As tf_impl's: blocks of 4 queries in the forward and in a prefill after 3 cached tokens (whose
    blocks must also see the cached keys) give the one-block logits."""
    import jax

    import reference.attention as attention
    from harness.interop.tolerances import TOLERANCES

    def run():
        jax.clear_caches()  # the jitted forward and prefill were traced with the block size in force
        cache = tiny_model.new_cache(tokens.shape[0], mode)
        _, cache = tiny_model.prefill(tokens[:, :3], cache)
        return np.asarray(tiny_model(tokens)), np.asarray(tiny_model.prefill(tokens[:, 3:], cache)[0])

    one_block = run()
    monkeypatch.setattr(attention, "QUERY_BLOCK", 4)
    assert [keys for _, _, keys in attention.query_blocks(9, 12)] == [7, 11, 12]
    try:
        tol = TOLERANCES["logits"]
        for blocked, whole in zip(run(), one_block):
            np.testing.assert_allclose(blocked, whole, atol=tol.atol, rtol=tol.rtol)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
