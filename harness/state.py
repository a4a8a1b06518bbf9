"""The canonical model state: a flat ``{DeepSeek tensor name: np.ndarray}`` dict.

Names follow DeepSeek-V3's ``inference/model.py`` and linear weights are stored ``[out, in]``.
Both frameworks convert at their own edge, so this module (and ``harness.io``) needs neither.
The MTP modules use the names of the released checkpoint's extra layer under the prefix
``mtp.{k}.``: ``enorm``, ``hnorm``, ``eh_proj`` (input [emb; hidden], so ``[dim, 2*dim]``), a full
transformer block, and ``norm`` (the released ``shared_head.norm``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from harness.config import ModelConfig

Shape = tuple[int, ...]


class StateError(ValueError):
    """A state dict that does not fit the config. The message lists every mismatch."""


def _mlp_shapes(prefix: str, dim: int, hidden: int) -> dict[str, Shape]:
    return {
        f"{prefix}.w1.weight": (hidden, dim),
        f"{prefix}.w2.weight": (dim, hidden),
        f"{prefix}.w3.weight": (hidden, dim),
    }


def block_shapes(cfg: ModelConfig, prefix: str, layer_id: int) -> dict[str, Shape]:
    """Names and shapes of one transformer block (attention + dense or MoE FFN) under ``prefix``."""
    n, d = cfg.n_heads, cfg.dim
    shapes: dict[str, Shape] = {f"{prefix}.attn_norm.weight": (d,), f"{prefix}.ffn_norm.weight": (d,)}
    attn = f"{prefix}.attn"
    if cfg.q_lora_rank == 0:
        shapes[f"{attn}.wq.weight"] = (n * cfg.qk_head_dim, d)
    else:
        shapes[f"{attn}.wq_a.weight"] = (cfg.q_lora_rank, d)
        shapes[f"{attn}.q_norm.weight"] = (cfg.q_lora_rank,)
        shapes[f"{attn}.wq_b.weight"] = (n * cfg.qk_head_dim, cfg.q_lora_rank)
    shapes[f"{attn}.wkv_a.weight"] = (cfg.kv_lora_rank + cfg.qk_rope_head_dim, d)
    shapes[f"{attn}.kv_norm.weight"] = (cfg.kv_lora_rank,)
    shapes[f"{attn}.wkv_b.weight"] = (n * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank)
    shapes[f"{attn}.wo.weight"] = (d, n * cfg.v_head_dim)
    ffn = f"{prefix}.ffn"
    if not cfg.is_moe_layer(layer_id):
        shapes.update(_mlp_shapes(ffn, d, cfg.inter_dim))
        return shapes
    shapes[f"{ffn}.gate.weight"] = (cfg.n_routed_experts, d)
    shapes[f"{ffn}.gate.bias"] = (cfg.n_routed_experts,)
    for j in range(cfg.n_routed_experts):
        shapes.update(_mlp_shapes(f"{ffn}.experts.{j}", d, cfg.moe_inter_dim))
    if cfg.n_shared_experts:
        shapes.update(_mlp_shapes(f"{ffn}.shared_experts", d, cfg.n_shared_experts * cfg.moe_inter_dim))
    return shapes


def expected_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """Every tensor of the canonical state for ``cfg``, in a stable order."""
    shapes: dict[str, Shape] = {"embed.weight": (cfg.vocab_size, cfg.dim)}
    for i in range(cfg.n_layers):
        shapes.update(block_shapes(cfg, f"layers.{i}", i))
    shapes["norm.weight"] = (cfg.dim,)
    shapes["head.weight"] = (cfg.vocab_size, cfg.dim)
    for k in range(cfg.n_mtp_modules):
        p = f"mtp.{k}"
        shapes[f"{p}.enorm.weight"] = (cfg.dim,)
        shapes[f"{p}.hnorm.weight"] = (cfg.dim,)
        shapes[f"{p}.eh_proj.weight"] = (cfg.dim, 2 * cfg.dim)
        shapes.update(block_shapes(cfg, p, cfg.n_layers + k))
        shapes[f"{p}.norm.weight"] = (cfg.dim,)
    return shapes


def num_params(cfg: ModelConfig) -> int:
    """Parameter count of the canonical state (gate biases included; they are not trained by gradient)."""
    return sum(int(np.prod(s)) for s in expected_shapes(cfg).values())


def check_state(state: Mapping[str, object], cfg: ModelConfig, source: str = "state") -> None:
    """Raise StateError listing every missing, unexpected and wrong-shaped tensor of ``state``."""
    expected = expected_shapes(cfg)
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"missing tensor {name} (expected {list(shape)})")
        elif tuple(np.shape(state[name])) != shape:
            problems.append(f"tensor {name} has shape {list(np.shape(state[name]))}, expected {list(shape)}")
    for name in state:
        if name not in expected:
            problems.append(f"unexpected tensor {name} with shape {list(np.shape(state[name]))}")
    if problems:
        head = f"{source} does not match the config ({len(problems)} problem(s)):"
        raise StateError("\n  ".join([head, *problems]))
