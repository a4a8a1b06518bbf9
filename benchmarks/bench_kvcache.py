"""KV-cache size of MLA, from the bytes of cache tensors ``tf_impl`` actually allocates.

Criterion: P1.mla_kv_reduction ("MLA reduces the KV cache by 93.3%"). Two comparisons:

* ``track_reduction_vs_mha``: the absorbed MLA cache against the naive per-head K,V cache (keys of
  qk_nope + qk_rope per head, values of v_head_dim per head) at the same dims, both built by
  ``tf_impl``. bench: ``model.new_cache`` of a real ``ModelConfig.bench()`` model. v3_671b: the
  ``tf_impl.KVCache`` objects that ``new_cache`` would return for a one-layer, 16-position
  ``ModelConfig.v3_671b`` (the ratio per token is the same for every layer; no 671B weight is built).
* ``track_reduction_vs_67b_gqa``: the DeepSeek-V2 paper's figure, MLA's absorbed cache (per-layer
  elements from the allocated 671B-dims cache, C=512 + R=64, times V2's 60 layers) at ``kv_bits``
  against DeepSeek 67B's GQA cache (95 layers x 8 KV heads x 128 x 2 = 194,560 elements, bf16).
"""

from __future__ import annotations

from . import common

V2_LAYERS = 60
GQA_67B_ELEMENTS = 95 * 8 * 128 * 2   # layers x KV heads x head dim x (K and V), per token
GQA_67B_BITS = 16                     # bf16


def _per_token(cache) -> tuple[int, int]:
    """(bytes, elements) per token over all layers of an allocated ``tf_impl`` cache."""
    positions = cache.batch_size * cache.max_seq_len
    elements = sum(v.shape.num_elements() for v in cache.variables)
    return cache.nbytes // positions, elements // positions


class KVCache:
    """MLA cache reduction against a per-head K,V cache and against DeepSeek 67B's GQA cache."""

    def setup_cache(self):
        from tf_impl.attention import KVCache as TFCache
        from tf_impl.model import Transformer

        bench = Transformer(common.config("bench"), seed=common.SEED)
        per_token = {"bench": {mode: _per_token(bench.new_cache(1, mode)) for mode in ("absorb", "naive")}}
        v3 = common.config("v3_671b").replace(n_layers=1, n_dense_layers=0, max_seq_len=16)  # caches only
        per_token["v3_671b"] = {mode: _per_token(TFCache(v3, 1, mode)) for mode in ("absorb", "naive")}
        return per_token

    setup_cache.timeout = 120

    def track_reduction_vs_mha(self, per_token, dims):
        """P1.mla_kv_reduction: 1 - absorbed MLA cache bytes / naive per-head K,V cache bytes, per token."""
        absorb, naive = per_token[dims]["absorb"][0], per_token[dims]["naive"][0]
        return 1.0 - absorb / naive

    track_reduction_vs_mha.params = [("bench", "v3_671b")]
    track_reduction_vs_mha.param_names = ["dims"]
    track_reduction_vs_mha.unit = "fraction"
    track_reduction_vs_mha.pretty_name = "KV-cache reduction, absorbed MLA vs per-head K,V cache"

    def track_reduction_vs_67b_gqa(self, per_token, kv_bits):
        """P1.mla_kv_reduction: 1 - MLA (V2: 60 layers) elements x kv_bits / 67B GQA elements x 16 bits."""
        mla_elements = per_token["v3_671b"]["absorb"][1] * V2_LAYERS  # the cache was built with one layer
        return 1.0 - mla_elements * kv_bits / (GQA_67B_ELEMENTS * GQA_67B_BITS)

    track_reduction_vs_67b_gqa.params = [(16, 6)]
    track_reduction_vs_67b_gqa.param_names = ["kv_bits"]
    track_reduction_vs_67b_gqa.unit = "fraction"
    track_reduction_vs_67b_gqa.pretty_name = "KV-cache reduction, MLA (V2 dims) vs DeepSeek 67B GQA"
