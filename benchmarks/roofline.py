"""What a prefill must compute and what a decode step must read, counted from the config alone.

The two roofline criteria divide a measured time by what the hardware could do with the work the model
needs: PX.prefill_mfu divides the model FLOPs of a prefill per second by the GEMM peak, and
PX.decode_roofline divides a decode step's time by the bytes it must read over the stream bandwidth.
Both peaks are measured in the same process as the model (``benchmarks/bench_roofline.py``); this
module only counts, with no framework import, so it is tested against hand counts at ``tiny``
(tests/benchmarks/test_roofline.py).

What counts:

* **FLOPs** are the matmul FLOPs of DeepSeek-V3's forward (2 per multiply-add), as its inference code
  computes it in the cache mode asked for: every linear layer the tokens pass through, the router, the
  shared experts, only the K activated routed experts per token, the attention scores and the weighted
  sum over the causal key positions only (key s <= query position), and the output head over every
  position (``prefill`` returns logits for all T). Norms, RoPE, softmax, SiLU and the gate's top-k are
  left out (a few % of the work, none of it GEMM), as in the usual MFU accounting (PaLM, nanoGPT).
  Absorbed mode folds ``wkv_b``'s key rows into the query and its value rows after the weighted sum
  (scores against the C-wide latent plus the R-wide rope key, the weighted sum over the latent); naive
  mode expands every token's latent to per-head keys and values with ``wkv_b`` first. Work an
  implementation does beyond this (masked-out key positions, padding rows of the expert dispatch) is
  waste that lowers the utilisation, not model FLOPs.
* **Bytes read by a decode step** are every weight tensor the step must read once, in fp32 (both models
  keep their weights in fp32, FP8 mode quantises on the fly): the B embedding rows gathered, every
  attention tensor and norm of every layer, the dense FFNs, each MoE layer's gate, its shared experts and
  only the routed experts that at least one of the B tokens was sent to at that layer (``experts_read``,
  which the caller takes from the step's actual routing), the final norm and the whole output head; plus
  the filled cache of every layer, ``cached + 1`` positions (the step writes its own key, then attends
  over it too). The MTP modules are not used by a decode step. Activations, the RoPE tables and the
  one cache row written are left out (under 0.1% at ``bench``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.config import ModelConfig
from harness.state import block_shapes

MODES = ("absorb", "naive")
FP32_BYTES = 4


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"cache mode {mode!r} is unknown; use one of {MODES}")


def causal_pairs(new_tokens: int, cached: int) -> int:
    """(query, key) pairs one sequence attends: query i (at position cached + i) sees cached + i + 1 keys."""
    return new_tokens * cached + new_tokens * (new_tokens + 1) // 2


def attention_flops(cfg: ModelConfig, tokens: int, pairs: int, mode: str) -> int:
    """Matmul FLOPs of one MLA layer for ``tokens`` query tokens attending ``pairs`` (query, key) pairs.

    Args:
        cfg: the model.
        tokens: query tokens, all sequences together (B * T).
        pairs: (query, key) pairs, all sequences together (B * causal_pairs).
        mode: ``"absorb"`` or ``"naive"`` (see the module docstring).

    Returns:
        2 * multiply-adds of the projections, the attention scores and the weighted sum.
    """
    _check_mode(mode)
    n, d, c, r = cfg.n_heads, cfg.dim, cfg.kv_lora_rank, cfg.qk_rope_head_dim
    h, hv = cfg.qk_nope_head_dim, cfg.v_head_dim
    if cfg.q_lora_rank:
        q_proj = d * cfg.q_lora_rank + cfg.q_lora_rank * n * (h + r)          # wq_a, wq_b
    else:
        q_proj = d * n * (h + r)                                              # wq
    per_token = q_proj + d * (c + r) + n * hv * d                             # + wkv_a, wo
    if mode == "absorb":
        per_token += n * h * c + n * c * hv                                   # q_nope . W_k, latent . W_v
        per_pair = n * (c + r) + n * c                                        # scores, weighted latent sum
    else:
        per_token += c * n * (h + hv)                                         # wkv_b: per-head k_nope, v
        per_pair = n * (h + r) + n * hv                                       # scores, weighted value sum
    return 2 * (tokens * per_token + pairs * per_pair)


def ffn_flops(cfg: ModelConfig, tokens: int, layer_id: int) -> int:
    """Matmul FLOPs of layer ``layer_id``'s FFN for ``tokens`` tokens: dense SwiGLU, or router + shared
    experts + the K activated routed experts per token."""
    d = cfg.dim
    if not cfg.is_moe_layer(layer_id):
        return 2 * tokens * 3 * d * cfg.inter_dim
    experts = cfg.n_activated_experts + cfg.n_shared_experts                  # SwiGLU widths of moe_inter_dim
    return 2 * tokens * (d * cfg.n_routed_experts + experts * 3 * d * cfg.moe_inter_dim)


def forward_flops(cfg: ModelConfig, batch: int, new_tokens: int, cached: int = 0, mode: str = "absorb") -> int:
    """Model FLOPs of ``model.prefill`` (or, with ``new_tokens=1``, ``decode_step``) on the trunk and head.

    Args:
        cfg: the model.
        batch: B sequences.
        new_tokens: T tokens per sequence processed by the call.
        cached: positions already in the cache before the call.
        mode: the cache mode.

    Returns:
        the FLOPs of the ``n_layers`` blocks and the output head over all B * T positions.
    """
    tokens, pairs = batch * new_tokens, batch * causal_pairs(new_tokens, cached)
    layers = sum(attention_flops(cfg, tokens, pairs, mode) + ffn_flops(cfg, tokens, i) for i in range(cfg.n_layers))
    return layers + 2 * tokens * cfg.dim * cfg.vocab_size


def distinct_experts(indices: np.ndarray) -> list[int]:
    """Per MoE layer, how many routed experts at least one token was sent to.

    Args:
        indices: int [L, ..., K] routed expert ids per MoE layer (e.g. the decoded position's
            ``router_indices`` of ``forward_aux``); entries < 0 are padding and ignored.

    Returns:
        L counts.
    """
    arr = np.asarray(indices)
    if arr.ndim < 2:
        raise ValueError(f"indices must be [layers, ..., K], got shape {list(arr.shape)}")
    return [int(np.unique(layer[layer >= 0]).size) for layer in arr]


def decode_bytes(cfg: ModelConfig, batch: int, cached: int, experts_read: Sequence[int], mode: str = "absorb") -> int:
    """Bytes one decode step of ``batch`` sequences after ``cached`` positions must read (module docstring).

    Args:
        cfg: the model.
        batch: B sequences, one new token each.
        cached: positions in the cache before the step.
        experts_read: per MoE layer of the trunk (layers ``n_dense_layers .. n_layers - 1``), the routed
            experts the step's tokens were sent to (``distinct_experts``).
        mode: the cache mode: absorbed latent + rope key per position, or per-head keys and values.

    Returns:
        fp32 bytes of the weights read and of the filled cache.
    """
    _check_mode(mode)
    moe_layers = [i for i in range(cfg.n_layers) if cfg.is_moe_layer(i)]
    if len(experts_read) != len(moe_layers):
        raise ValueError(f"experts_read has {len(experts_read)} entries, but the trunk has {len(moe_layers)} MoE "
                         f"layers ({moe_layers}); give one count per MoE layer")
    bad = [e for e in experts_read if not 0 <= e <= min(cfg.n_routed_experts, batch * cfg.n_activated_experts)]
    if bad:
        raise ValueError(f"experts_read {list(experts_read)} holds impossible counts {bad}: at most "
                         f"min(n_routed_experts, batch * n_activated_experts) experts can be read")
    reads = dict(zip(moe_layers, experts_read))
    scalars = batch * cfg.dim + cfg.dim + cfg.vocab_size * cfg.dim           # embedding rows, final norm, head
    expert = 3 * cfg.dim * cfg.moe_inter_dim
    for i in range(cfg.n_layers):
        shapes = block_shapes(cfg, f"layers.{i}", i)
        scalars += sum(int(np.prod(s)) for name, s in shapes.items() if ".experts." not in name)
        scalars += reads.get(i, 0) * expert
    if mode == "absorb":
        per_position = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    else:
        per_position = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    scalars += cfg.n_layers * batch * (cached + 1) * per_position
    return FP32_BYTES * scalars
