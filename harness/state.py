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
    """Names and shapes of one transformer block (attention + dense or MoE FFN) under ``prefix``.

    Args:
        cfg: the model config (dimensions, q LoRA rank, expert counts).
        prefix: the block's name prefix, ``layers.<i>`` for a main block or ``mtp.<k>`` for an MTP module's.
        layer_id: the block's index in the whole stack (MTP blocks after the main ones); it decides dense or MoE.

    Returns:
        ``{tensor name: shape}`` in DeepSeek's names, linear weights as [out, in].
    """
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
    """Every tensor of the canonical state for ``cfg``, in a stable order.

    Args:
        cfg: the model config.

    Returns:
        ``{tensor name: shape}``: embedding, main blocks, final norm, head, then the MTP modules.
    """
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
    """Raise StateError listing every missing, unexpected and wrong-shaped tensor of ``state``.

    Args:
        state: ``{tensor name: array}`` to check (only shapes are read).
        cfg: the config the state must match (``expected_shapes``).
        source: how the error message names the state, e.g. a checkpoint path.
    """
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


_F32_MAX = float(np.finfo(np.float32).max)


def check_loadable(state: object, cfg: ModelConfig, source: str = "state", allow_non_finite: bool = False) -> None:
    """What both frameworks' ``load_state_dict`` check before touching a weight; StateError lists every problem.

    The state must be a mapping that fits ``cfg`` (``check_state``), of floating-point tensors whose
    values survive the cast to float32: a NaN or Inf weight, or a float64 value beyond float32's range
    (which the cast would silently turn into Inf), makes every later output NaN or zero without a word,
    so it is refused with the tensor's name unless ``allow_non_finite`` says the caller means it.

    Args:
        state: ``{canonical name: array}``, as ``state_dict()`` or ``harness.io.load_safetensors`` give it.
        cfg: the config the state must fit.
        source: how the messages name the state, e.g. a checkpoint path.
        allow_non_finite: accept NaN/Inf (and float32 overflow) on purpose, e.g. to reproduce a divergence.
    """
    if not isinstance(state, Mapping):
        raise StateError(f"load_state_dict needs a {{tensor name: array}} mapping (model.state_dict() or "
                         f"harness.io.load_safetensors(path)), got {type(state).__name__}: {state!r:.60}")
    check_state(state, cfg, source)
    arrays = {name: np.asarray(value) for name, value in state.items()}
    not_float = sorted(n for n, a in arrays.items() if not np.issubdtype(a.dtype, np.floating))
    if not_float:
        raise StateError(f"{source}: tensors must be floating point; not so for {not_float} "
                         f"(dtypes {sorted({str(arrays[n].dtype) for n in not_float})})")
    if allow_non_finite:
        return
    problems = []
    for name, a in arrays.items():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            problems.append(f"{name} holds {bad} non-finite value(s) (NaN or Inf) of {a.size}")
        elif a.dtype.itemsize > 4 and a.size and float(np.abs(a).max()) > _F32_MAX:
            problems.append(f"{name} holds {float(np.abs(a).max()):.3g} ({a.dtype}), which overflows float32 "
                            f"(max {_F32_MAX:.3g}) to Inf")
    if problems:
        raise StateError("\n  ".join([f"{source} has {len(problems)} tensor(s) that would load as NaN/Inf:", *problems,
                                      "fix the state, or pass allow_non_finite=True to load it anyway"]))
