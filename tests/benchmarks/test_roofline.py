"""benchmarks.roofline against counts written out by hand at ``ModelConfig.tiny()``.

tiny: dim D=64, inter_dim 128, moe_inter_dim F=32, vocab V=256, 2 layers (layer 0 dense, layer 1 MoE),
N=4 heads, q_lora_rank Q=32, kv_lora_rank C=16, nope H=16, rope R=8, v Hv=16, E=8 routed experts,
1 shared, K=2 activated.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import roofline
from harness.config import ModelConfig
from harness.state import expected_shapes

TINY = ModelConfig.tiny()


def test_causal_pairs():
    assert roofline.causal_pairs(4, 0) == 1 + 2 + 3 + 4
    assert roofline.causal_pairs(1, 256) == 257
    assert roofline.causal_pairs(3, 5) == 6 + 7 + 8


def test_prefill_flops_tiny_absorb_by_hand():
    b, t = 2, 4
    tokens = b * t                                    # 8 query tokens
    pairs = b * (1 + 2 + 3 + 4)                       # 20 causal (query, key) pairs
    # Attention, multiply-adds per token: wq_a 64x32, wq_b 32x(4*(16+8)), wkv_a 64x(16+8), wo (4*16)x64,
    # absorbed key rows of wkv_b into q: 4*16*16, absorbed value rows after the weighted sum: 4*16*16.
    attn_per_token = 64 * 32 + 32 * 96 + 64 * 24 + 64 * 64 + 4 * 16 * 16 + 4 * 16 * 16
    assert attn_per_token == 12800
    # Per pair: scores against latent + rope key 4*(16+8), weighted sum of the latent 4*16.
    attn_per_pair = 4 * 24 + 4 * 16
    attn_layer = 2 * (tokens * attn_per_token + pairs * attn_per_pair)
    layer0 = attn_layer + 2 * tokens * (3 * 64 * 128)                          # dense SwiGLU
    layer1 = attn_layer + 2 * tokens * (64 * 8 + (2 + 1) * 3 * 64 * 32)         # router, 2 routed + 1 shared
    head = 2 * tokens * 64 * 256
    assert layer0 + layer1 + head == 1_380_864
    assert roofline.forward_flops(TINY, b, t, mode="absorb") == 1_380_864


def test_flops_modes_differ_where_the_latent_is_wider_than_a_head():
    """At tiny C == H == Hv, so both modes cost the same; with C=24 absorbed attention costs more per pair."""
    cfg = ModelConfig.tiny(kv_lora_rank=24)
    tokens, pairs = 1, 3                             # one query token after 2 cached positions
    proj = 64 * 32 + 32 * 96 + 64 * (24 + 8) + 64 * 64
    absorb = 2 * (tokens * (proj + 4 * 16 * 24 + 4 * 24 * 16) + pairs * (4 * (24 + 8) + 4 * 24))
    naive = 2 * (tokens * (proj + 24 * 4 * (16 + 16)) + pairs * (4 * (16 + 8) + 4 * 16))
    assert roofline.attention_flops(cfg, tokens, pairs, "absorb") == absorb
    assert roofline.attention_flops(cfg, tokens, pairs, "naive") == naive
    assert absorb > naive
    ffn = 2 * 3 * 64 * 128 + 2 * (64 * 8 + 3 * 3 * 64 * 32)
    assert roofline.forward_flops(cfg, 1, 1, cached=2, mode="naive") == 2 * naive + ffn + 2 * 64 * 256


def test_decode_bytes_tiny_by_hand():
    b, cached = 2, 5
    attn = (64 + 64                                   # attn_norm, ffn_norm
            + 32 * 64 + 32 + 96 * 32                  # wq_a, q_norm, wq_b
            + 24 * 64 + 16                            # wkv_a, kv_norm
            + (4 * 32) * 16 + 64 * 64)                # wkv_b, wo
    assert attn == 12976
    layer0 = attn + 3 * 128 * 64                      # dense SwiGLU
    layer1 = attn + 8 * 64 + 8 + 3 * 32 * 64 + 3 * (3 * 32 * 64)   # gate weight+bias, shared, 3 routed read
    rest = b * 64 + 64 + 256 * 64                     # embedding rows of the 2 tokens, final norm, head
    cache = 2 * b * (cached + 1) * (16 + 8)           # 2 layers x B x 6 positions x (C + R)
    scalars = layer0 + layer1 + rest + cache
    assert scalars == 92776
    assert roofline.decode_bytes(TINY, b, cached, [3], "absorb") == 4 * scalars
    naive_cache = 2 * b * (cached + 1) * 4 * (24 + 16)  # per-head keys (H+R) and values (Hv)
    assert roofline.decode_bytes(TINY, b, cached, [3], "naive") == 4 * (scalars - cache + naive_cache)


def test_decode_bytes_with_every_expert_read_is_the_trunk_state():
    """All experts read = every trunk tensor of the canonical state, less the embedding rows not gathered."""
    cfg = ModelConfig.bench()
    state = expected_shapes(cfg)
    trunk = sum(int(np.prod(s)) for name, s in state.items() if not name.startswith("mtp."))
    b, cached = 8, 256
    moe = cfg.n_layers - cfg.n_dense_layers
    cache = cfg.n_layers * b * (cached + 1) * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    expected = trunk - cfg.vocab_size * cfg.dim + b * cfg.dim + cache
    assert roofline.decode_bytes(cfg, b, cached, [cfg.n_routed_experts] * moe) == 4 * expected


def test_distinct_experts():
    indices = np.array([[[0, 1], [1, 2]], [[3, 3], [-1, -1]]])     # [L=2, B=2, K=2]
    assert roofline.distinct_experts(indices) == [3, 1]


@pytest.mark.parametrize("call, match", [
    (lambda: roofline.decode_bytes(TINY, 2, 5, [3, 3]), "2 entries.*1 MoE"),
    (lambda: roofline.decode_bytes(TINY, 2, 5, [5]), "impossible counts"),
    (lambda: roofline.forward_flops(TINY, 2, 4, mode="paged"), "cache mode 'paged' is unknown"),
    (lambda: roofline.distinct_experts(np.array([1, 2])), "must be"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_matmul_read_call_multiplies_every_weight_and_counts_their_bytes():
    """The read-rate probe behind Throughput.track_matmul_read_bandwidth: its work is the sum of ``count``
    products ``x @ W`` (so XLA cannot drop one) and its byte count is the weights', at fp32."""
    from benchmarks import common

    call, nbytes = common.matmul_read_call(rows=3, count=4, shape=(8, 5))
    assert nbytes == 4 * 8 * 5 * 4
    rng = np.random.default_rng(common.SEED)   # the probe's own draws, in its order
    weights = [rng.standard_normal((8, 5), dtype=np.float32) for _ in range(4)]
    x = rng.standard_normal((3, 8), dtype=np.float32)
    np.testing.assert_allclose(call(), sum(x @ w for w in weights), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows must be >= 1"):
        common.matmul_read_call(rows=0)
