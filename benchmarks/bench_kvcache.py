"""KV-cache size of MLA, from the bytes of cache tensors ``tf_impl`` actually allocates.

Criterion: P1.mla_kv_reduction ("MLA achieves 93.3% KV cache reduction"). Two comparisons:

* ``track_reduction_vs_mha`` (the gating number at dims=v3_671b): the absorbed MLA cache against the
  full multi-head K,V cache (keys of qk_nope + qk_rope per head, values of v_head_dim per head, every
  head) at the same dims and dtype (fp32), both allocated by ``tf_impl``, bytes per token over all
  layers. v3_671b: the ``tf_impl.KVCache`` objects that ``Transformer.new_cache`` returns for
  ``ModelConfig.v3_671b`` (all 61 layers, 128 heads, C=512, R=64), with max_seq_len=4 and one
  sequence so that they fit in memory (the bytes per token do not depend on the length); no 671B
  weight is built. bench: ``new_cache`` of a real ``ModelConfig.bench()`` model.
* ``track_reduction_vs_67b_gqa`` (context): the DeepSeek-V2 paper's figure, MLA's absorbed cache
  (per-layer elements from the allocated 671B-dims cache, C=512 + R=64, times V2's 60 layers) at
  ``kv_bits`` against DeepSeek 67B's GQA cache (95 layers x 8 KV heads x 128 x 2 = 194,560 elements,
  bf16). Its 6-bit case is the paper's quantised cache, which this project does not implement.
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
    """MLA cache reduction against a full multi-head K,V cache and against DeepSeek 67B's GQA cache."""

    version = "2"  # 2: the 671B-dims caches are allocated for all 61 layers

    def setup_cache(self):
        from tf_impl.attention import KVCache as TFCache
        from tf_impl.model import Transformer

        bench = Transformer(common.config("bench"), seed=common.SEED)
        per_token = {"bench": {mode: _per_token(bench.new_cache(1, mode)) for mode in ("absorb", "naive")}}
        # What Transformer(v3).new_cache(1, mode) returns, without the 671B weights; 61 layers x 4 positions:
        # naive 61 x 4 x 128 x (192 + 128) fp32 = 40 MB, absorb 61 x 4 x (512 + 64) fp32 = 0.6 MB.
        v3 = common.config("v3_671b").replace(max_seq_len=4, max_batch_size=1)
        per_token["v3_671b"] = {mode: _per_token(TFCache(v3, 1, mode)) for mode in ("absorb", "naive")}
        per_token["v3_671b_layers"] = v3.n_layers
        return per_token

    setup_cache.timeout = 120

    def track_reduction_vs_mha(self, per_token, dims):
        """P1.mla_kv_reduction: 1 - absorbed MLA cache bytes / full multi-head K,V cache bytes, per token over
        all layers, both caches allocated by tf_impl at the same dims and dtype."""
        absorb, naive = per_token[dims]["absorb"][0], per_token[dims]["naive"][0]
        return 1.0 - absorb / naive

    track_reduction_vs_mha.params = [("bench", "v3_671b")]
    track_reduction_vs_mha.param_names = ["dims"]
    track_reduction_vs_mha.unit = "fraction"
    track_reduction_vs_mha.pretty_name = "KV-cache reduction, absorbed MLA vs full multi-head K,V cache"

    def track_reduction_vs_67b_gqa(self, per_token, kv_bits):
        """P1.mla_kv_reduction: 1 - MLA (V2: 60 layers) elements x kv_bits / 67B GQA elements x 16 bits."""
        per_layer = per_token["v3_671b"]["absorb"][1] // per_token["v3_671b_layers"]
        mla_elements = per_layer * V2_LAYERS
        return 1.0 - mla_elements * kv_bits / (GQA_67B_ELEMENTS * GQA_67B_BITS)

    track_reduction_vs_67b_gqa.params = [(16, 6)]
    track_reduction_vs_67b_gqa.param_names = ["kv_bits"]
    track_reduction_vs_67b_gqa.unit = "fraction"
    track_reduction_vs_67b_gqa.pretty_name = "KV-cache reduction, MLA (V2 dims) vs DeepSeek 67B GQA"
