"""TF-vs-Flax numerical equivalence: the same fp32 weights in both models, identical inputs, one table.

``compare(cfg)`` loads one canonical state into ``tf_impl`` (the model under test) and ``reference``
(the Flax oracle) and compares, quantity by quantity: RMSNorm, RoPE tables, MLA (naive and absorbed),
gate scores / chosen experts / weights, MoE output, MTP output, full-model logits, the training loss
(main, MTP and balance parts), gradients of every parameter, one AdamW step, the GRPO loss and its gradients
(``harness.interop.equivalence_align``), greedy generation in both
cache modes, and the FP8 mode (``harness.interop.equivalence_fp8``: block quantisation bit for bit against the
ml_dtypes oracle, and the FP8 model). Each quantity is judged against ``harness.interop.tolerances.TOLERANCES`` (one table, one line
of justification each); routing (which expert set each token picks) is reported separately as an
agreement fraction, which must be 1.0. The logits are also held against a float64 run of the reference
(``harness.interop.equivalence_f64``), which measures the fp32 floor under the TF-vs-Flax comparison. A row that cannot tell a bug from fp32 noise at this config (the
FP8 model at bench size, see ``harness.interop.equivalence_fp8``) is shown with verdict INFO and does not gate.

``python -m harness equivalence [--config tiny|tiny-dense|tiny-yarn|bench|bench-layer|PATH.json] [--state PATH]``
prints the table and exits 1 when any check fails, 2 on bad input (unknown config, unreadable
state, a state that does not fit the config: every mismatch is listed; a state ``load_state_dict``
refuses: integer tensors, NaN/Inf weights). A NaN or Inf in either framework's output fails its row,
even where both sides agree on it.

The TF side is always the first operand (``a``), the reference the second (``b``); relative errors
are taken against the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from harness.config import ConfigError, Dtype, ModelConfig
from harness.interop.equivalence_f64 import oracle_rows
from harness.interop.rows import (Row, compare_row, expert_set_agreement, format_table, merge_rows,
                                  routing_agreement, summary)
from harness.interop.tolerances import REQUIRED_ROUTING_AGREEMENT, Tolerance

# "fp8_blocks" is the block quantisation and matmul alone (no model is built for it); "fp8" adds the FP8 model.
CHECKS = ("rmsnorm", "rope", "mla", "gate", "moe", "mtp", "logits", "loss", "gradients", "train_step",
          "grpo", "generation", "fp8_blocks", "fp8")
ALL = CHECKS

# Extra named configs of the equivalence suite (beyond ModelConfig.named's presets).
SUITE_CONFIGS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": ModelConfig.tiny,                                                    # dense + MoE (2 groups) + MTP
    "tiny-dense": lambda: ModelConfig.tiny(n_dense_layers=3),                    # 2 layers + 1 MTP block, all dense
    "tiny-yarn": lambda: ModelConfig.tiny(original_seq_len=32, max_seq_len=128),  # YaRN active (factor 4)
    "bench": ModelConfig.bench,
    "bench-layer": lambda: ModelConfig.bench(n_layers=1, n_dense_layers=0, n_mtp_modules=0),  # 1 MoE block, bench dims
}


def named_config(name_or_path: str) -> ModelConfig:
    """A suite config by name (``tiny``, ``tiny-dense``, ``tiny-yarn``, ``bench``, ``bench-layer``) or a JSON path."""
    return ModelConfig.named(name_or_path, presets=SUITE_CONFIGS)


# ------------------------------------------------------------------ the comparison

def reference_state(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The TF model's seeded state, with the gate biases set to seeded N(0, 0.02^2) values.

    A fresh model's biases are zero, which would leave the bias-for-selection-only path untested.

    Args:
        cfg: the model config.
        seed: seeds the TF model's initialisation; ``seed + 1`` seeds the gate biases.

    Returns:
        the canonical state, ``{DeepSeek tensor name: float32 array}``.
    """
    from harness.interop.bridge import build_model, export_state

    state = export_state(build_model("tf", cfg, seed=seed))
    rng = np.random.default_rng(seed + 1)
    for name in state:
        if name.endswith("ffn.gate.bias"):
            state[name] = (0.02 * rng.standard_normal(state[name].shape)).astype(np.float32)
    return state


@dataclass
class _Pair:
    """The two models and the shared inputs of one comparison."""

    cfg: ModelConfig
    tf: Any
    flax: Any
    tokens: np.ndarray
    rng: np.random.Generator


def _moe_layer_ids(cfg: ModelConfig) -> list[int]:
    return [i for i in range(cfg.n_layers + cfg.n_mtp_modules) if cfg.is_moe_layer(i)]


def _tf_block(model, layer_id: int):
    n = model.cfg.n_layers
    return model.layers[layer_id] if layer_id < n else model.mtp[layer_id - n].block


def _flax_block(module, layer_id: int):
    n = module.cfg.n_layers
    return module.layers[layer_id] if layer_id < n else module.mtp[layer_id - n].block


def _check_rmsnorm(p: _Pair) -> list[Row]:
    import jax.numpy as jnp

    from reference.norm import rms_norm as flax_rms
    from tf_impl.norm import rms_norm as tf_rms

    x = (p.rng.standard_normal((2, 8, p.cfg.dim)) * np.logspace(-2, 2, p.cfg.dim)).astype(np.float32)
    w = p.rng.standard_normal(p.cfg.dim).astype(np.float32)
    return [compare_row("RMSNorm", tf_rms(x, w, p.cfg.rms_eps),
                        flax_rms(jnp.asarray(x), jnp.asarray(w), p.cfg.rms_eps), "rmsnorm")]


def _check_rope(p: _Pair) -> list[Row]:
    import jax.numpy as jnp

    from reference import rope as fr
    from tf_impl import rope as tr

    cfg = p.cfg
    ranges = (tr.yarn_correction_range(cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast,
                                       cfg.beta_slow),
              fr.yarn_correction_range(cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_seq_len, cfg.beta_fast,
                                       cfg.beta_slow))
    tc, ts = (t.numpy() for t in tr.rope_tables(cfg))
    fc, fs = fr.rope_tables(cfg)
    x = p.rng.standard_normal((2, 8, cfg.n_heads, cfg.qk_rope_head_dim)).astype(np.float32)
    t = x.shape[1]
    rotated_tf = tr.apply_rope(x, tc[:t, None, :], ts[:t, None, :])
    rotated_flax = fr.apply_rope(jnp.asarray(x), jnp.asarray(fc[:t]), jnp.asarray(fs[:t]))
    freq_row = compare_row("RoPE freqs" + (" (YaRN)" if cfg.yarn_active else ""), tr.rope_freqs(cfg),
                           fr.rope_freqs(cfg), "rope_freqs", note=f"correction range TF {ranges[0]} Flax {ranges[1]}")
    if ranges[0] != ranges[1]:
        freq_row = replace(freq_row, passed=False)
    return [freq_row,
            compare_row(f"RoPE tables cos/sin [{cfg.max_seq_len}, R/2]", np.stack([tc, ts]), np.stack([fc, fs]),
                        "rope_tables"),
            compare_row("RoPE apply (interleaved pairs)", rotated_tf, rotated_flax, "apply_rope")]


def _rope_inputs(p: _Pair, t: int):
    import jax.numpy as jnp

    from reference.rope import rope_tables as flax_tables
    from tf_impl.rope import rope_tables as tf_tables

    tc, ts = tf_tables(p.cfg)
    fc, fs = flax_tables(p.cfg)
    return (tc[:t], ts[:t]), (jnp.asarray(fc[:t]), jnp.asarray(fs[:t]))


def _check_mla(p: _Pair) -> list[Row]:
    import jax.numpy as jnp
    import tensorflow as tf

    from reference.attention import CacheMode, causal_mask, empty_layer_cache

    cfg, (b, t) = p.cfg, p.tokens.shape
    (tc, ts), (fc, fs) = _rope_inputs(p, t)
    x = p.rng.standard_normal((b, t, cfg.dim)).astype(np.float32)
    module = p.flax.module
    rows = []
    for mode in ("naive", "absorb"):
        per_layer = []
        for i in range(cfg.n_layers):
            tf_attn, flax_attn = p.tf.layers[i].attn, module.layers[i].attn
            shapes = ([b, cfg.max_seq_len, cfg.n_heads, cfg.qk_head_dim], [b, cfg.max_seq_len, cfg.n_heads, cfg.v_head_dim]) \
                if mode == "naive" else ([b, cfg.max_seq_len, cfg.kv_lora_rank], [b, cfg.max_seq_len, cfg.qk_rope_head_dim])
            cache = tuple(tf.Variable(tf.zeros(s)) for s in shapes)
            out_tf = tf_attn(tf.constant(x), tc, ts, cache, 0, mode)
            out_fx, _ = flax_attn(jnp.asarray(x), fc, fs, causal_mask(0, t, t),
                                  empty_layer_cache(cfg, b, CacheMode(mode)), 0, CacheMode(mode))
            per_layer.append(compare_row(f"layer {i}", out_tf, out_fx, "mla"))
        rows.append(merge_rows(f"MLA {mode} cache (prefill, {cfg.n_layers} layers)", per_layer))
    return rows


def _check_gate_and_moe(p: _Pair) -> list[Row]:
    import jax.numpy as jnp
    import tensorflow as tf

    from reference.moe import route as flax_route
    from tf_impl.moe import route as tf_route

    cfg = p.cfg
    layers = _moe_layer_ids(cfg)
    if not layers:
        return []
    module = p.flax.module
    m = p.tokens.size
    scores, weights, indices, moe_rows = [], [], [], []
    for layer_id in layers:
        tf_moe, flax_moe = _tf_block(p.tf, layer_id).ffn, _flax_block(module, layer_id).ffn
        x = p.rng.standard_normal((m, cfg.dim)).astype(np.float32)
        wt, it, st = tf_route(x, tf_moe.gate_weight, tf_moe.gate_bias, **tf_moe.route_args)
        wf, i_f, sf = flax_route(jnp.asarray(x), flax_moe.gate.weight[...], flax_moe.gate.bias[...],
                                 **tf_moe.route_args)
        agree = expert_set_agreement(it, i_f)
        scores.append(compare_row(f"layer {layer_id}", st, sf, "gate_scores"))
        same = np.all(np.sort(it.numpy(), -1) == np.sort(np.asarray(i_f), -1), -1)
        # weights compared in expert order, on tokens that chose the same set (the others count in routing)
        order_t, order_f = np.argsort(it.numpy(), -1), np.argsort(np.asarray(i_f), -1)
        w_t = np.take_along_axis(wt.numpy(), order_t, -1)[same]
        w_f = np.take_along_axis(np.asarray(wf), order_f, -1)[same]
        weights.append(compare_row(f"layer {layer_id}", w_t, w_f, "gate_weights", routing=agree))
        indices.append(agree)
        x3 = x.reshape(*p.tokens.shape, cfg.dim)
        out_f, _, idx_f = flax_moe(jnp.asarray(x3))
        for differentiable in (True, False):
            out_t, (_, idx_t, _) = tf_moe(tf.constant(x3), differentiable)
            scheme = "tiled" if differentiable else "looped"
            moe_rows.append(compare_row(f"layer {layer_id} {scheme}", out_t, out_f, "moe",
                                        routing=expert_set_agreement(idx_t, idx_f)))
    n = len(layers)
    return [merge_rows(f"gate scores ({n} MoE layers)", scores),
            Row("gate chosen experts (set per token)", 0.0, 0.0, Tolerance(0.0, 0.0, "exact"), min(indices),
                min(indices) >= REQUIRED_ROUTING_AGREEMENT, f"{m} random tokens per layer"),
            merge_rows("gate weights (normalised x route_scale)", weights),
            merge_rows("MoE output (TF tiled and looped dispatch)", moe_rows)]


def _check_mtp(p: _Pair) -> list[Row]:
    import jax.numpy as jnp

    from reference.attention import causal_mask

    cfg = p.cfg
    if not cfg.n_mtp_modules:
        return []
    b, t = p.tokens.shape
    (tc, ts), (fc, fs) = _rope_inputs(p, t)
    module = p.flax.module
    rows = []
    for k in range(cfg.n_mtp_modules):
        emb, h = (p.rng.standard_normal((b, t, cfg.dim)).astype(np.float32) for _ in range(2))
        out_t, info_t = p.tf.mtp[k](emb, h, tc, ts)
        out_f, route_f = module.mtp[k](jnp.asarray(emb), jnp.asarray(h), fc, fs, causal_mask(0, t, t))
        agree = None if info_t is None else expert_set_agreement(info_t[1], route_f[1])
        rows.append(compare_row(f"MTP module {k}", out_t, out_f, "mtp", routing=agree))
    return [merge_rows(f"MTP module output h^k ({cfg.n_mtp_modules} module(s))", rows)]


def _check_logits(p: _Pair) -> list[Row]:
    logits_t = p.tf(p.tokens)
    logits_f = p.flax(p.tokens)
    aux_logits_t, aux_t = p.tf.forward_aux(p.tokens)
    aux_logits_f, aux_f = p.flax.forward_aux(p.tokens)
    routing = routing_agreement(aux_t, aux_f)
    rows = [compare_row(f"logits, all {p.tokens.shape[1]} positions (model(tokens))", logits_t, logits_f, "logits"),
            compare_row("logits via forward_aux (training path)", aux_logits_t, aux_logits_f, "logits",
                        routing=routing)]
    for k, (a, b) in enumerate(zip(aux_t["mtp_logits"], aux_f["mtp_logits"]), start=1):
        rows.append(compare_row(f"MTP logits, module {k}", a, b, "logits"))
    names = ["model(tokens)", "forward_aux"] + [f"MTP module {k}" for k in range(1, len(aux_t["mtp_logits"]) + 1)]
    rows = oracle_rows(names, [logits_t, aux_logits_t, *aux_t["mtp_logits"]],
                       [logits_f, aux_logits_f, *aux_f["mtp_logits"]], p.flax, p.tokens, aux_t, rows)
    if routing is not None:
        rows.append(compare_row("expert load per MoE layer", aux_t["expert_load"], aux_f["expert_load"], "gate_bias",
                                routing=routing))
    return rows


def _greedy(model, prompt: np.ndarray, steps: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tokens [B, steps] and the logits [steps, B, V] that chose them, via prefill + decode_step."""
    logits, cache = model.prefill(prompt, model.new_cache(prompt.shape[0], mode))
    step_logits = [np.asarray(logits)[:, -1]]
    for _ in range(steps - 1):
        nxt = np.argmax(step_logits[-1], -1).astype(np.int32)
        logits, cache = model.decode_step(nxt, cache)
        step_logits.append(np.asarray(logits))
    stacked = np.stack(step_logits)
    return np.argmax(stacked, -1).T.astype(np.int32), stacked


def _check_generation(p: _Pair, steps: int = 32) -> list[Row]:
    cfg = p.cfg
    prompt_len = min(8, cfg.max_seq_len - steps)
    prompts = p.rng.integers(0, cfg.vocab_size, (3, prompt_len)).astype(np.int32)  # 3 prompts, one batch
    rows = []
    for mode in ("absorb", "naive"):
        tok_t, logits_t = _greedy(p.tf, prompts, steps, mode)
        tok_f, logits_f = _greedy(p.flax, prompts, steps, mode)
        same = tok_t == tok_f
        first = int(np.argmin(same.all(0))) if not same.all() else steps
        n = first  # logits are comparable while the token paths agree
        row = compare_row(f"greedy generation, {mode} cache ({len(prompts)} prompts x {steps} steps)",
                          logits_t[:max(n, 1)], logits_f[:max(n, 1)], "decode_logits",
                          note="tokens identical" if same.all() else f"tokens diverge at step {first}")
        rows.append(replace(row, passed=row.passed and bool(same.all())))
    public_t = np.asarray(p.tf.generate(prompts, steps))    # both return the new tokens only, [B, steps]
    public_f = np.asarray(p.flax.generate(prompts, steps))
    rows.append(Row("generate() public API, greedy (absorb)", 0.0, 0.0, Tolerance(0.0, 0.0, "exact"), None,
                    bool(np.array_equal(public_t, public_f)),
                    "tokens identical" if np.array_equal(public_t, public_f) else "tokens differ"))
    return rows


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Both frameworks compute float32 matmuls in full float32 while inside.

    On CPU this changes nothing. On NVIDIA Ampere and later, TF runs fp32 matmuls as TF32 by default and
    JAX's default precision lowers them to TF32 (or bf16 passes) as well: 10 mantissa bits instead of 23.
    Measured on an H100 (issue 12's GPU check), Flax's tiny logits then moved by 0.9 against a
    full-precision run, hiding any real 1e-5 difference. The previous settings are restored on exit.
    """
    import jax
    import tensorflow as tf

    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def compare(cfg: ModelConfig, state: Mapping[str, np.ndarray] | None = None, seed: int = 0,
            checks: Sequence[str] = ALL, batch: int = 2, seq_len: int = 40, tf_compiled: bool = False) -> list[Row]:
    """Load one canonical state into both models and compare every quantity in ``checks``, in full fp32
    (:func:`full_fp32`).

    ``state`` defaults to :func:`reference_state` (the TF model's seeded weights, nonzero gate biases);
    a given state is checked against ``cfg`` first (``harness.state.StateError`` lists every mismatch).
    Losses and gradients need a balance term to test, so a config with MoE layers and
    ``balance_alpha == 0`` is compared with ``balance_alpha = 0.01`` (it changes nothing else).
    The inputs are ``batch`` sequences of ``seq_len`` seeded random tokens; random continuous inputs
    make routing ties (two selection scores within an ulp) vanishingly rare. ``tf_compiled`` runs the
    TF model's XLA paths (``Transformer(compiled=True)``); the default runs the same code eagerly,
    which skips minutes of XLA compilation on CPU.

    Args:
        cfg: the model config both twins are built from.
        state: the canonical state to load into both; None uses :func:`reference_state` with ``seed``.
        seed: seeds the default state, the input tokens and the comparisons' random inputs.
        checks: the quantities to compare, a subset of ``CHECKS``; an unknown name is an error.
        batch: B of the input tokens.
        seq_len: T of the input tokens.
        tf_compiled: run the TF model's XLA paths instead of the same code eagerly.

    Returns:
        one Row per compared quantity, in check order.
    """
    with full_fp32():
        return _compare(cfg, state, seed, checks, batch, seq_len, tf_compiled)


def _compare(cfg: ModelConfig, state: Mapping[str, np.ndarray] | None, seed: int, checks: Sequence[str], batch: int,
             seq_len: int, tf_compiled: bool) -> list[Row]:
    from harness.interop.bridge import build_model
    from harness.interop.equivalence_align import grpo_rows
    from harness.interop.equivalence_fp8 import fp8_block_rows, fp8_model_rows
    from harness.interop.equivalence_train import training_rows
    from harness.state import check_loadable

    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {list(CHECKS)}")
    if _moe_layer_ids(cfg) and cfg.balance_alpha == 0.0:
        cfg = cfg.replace(balance_alpha=0.01)
    cfg = cfg.replace(dtype=Dtype.FLOAT32)
    needs_models = bool(set(checks) - {"fp8_blocks"})  # the block checks alone need no model
    if state is not None:
        check_loadable(state, cfg, "state")  # what load_state_dict refuses, refused before any model is built
        state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    elif needs_models:
        state = reference_state(cfg, seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (batch, min(seq_len, cfg.max_seq_len))).astype(np.int32)
    if not needs_models:
        return fp8_block_rows(cfg, rng, state)
    pair = _Pair(cfg, build_model("tf", cfg, state, compiled=tf_compiled), build_model("flax", cfg, state), tokens, rng)
    rows: list[Row] = []
    if "rmsnorm" in checks:
        rows += _check_rmsnorm(pair)
    if "rope" in checks:
        rows += _check_rope(pair)
    if "mla" in checks:
        rows += _check_mla(pair)
    if "gate" in checks or "moe" in checks:
        rows += [r for r in _check_gate_and_moe(pair)
                 if ("gate" in checks and r.component.startswith("gate")) or ("moe" in checks and r.component.startswith("MoE"))]
    if "mtp" in checks:
        rows += _check_mtp(pair)
    if "logits" in checks:
        rows += _check_logits(pair)
    if {"loss", "gradients", "train_step"} & set(checks):
        rows += training_rows(pair, state, checks)
    if "grpo" in checks:
        rows += grpo_rows(pair)
    if "generation" in checks:
        rows += _check_generation(pair)
    if {"fp8_blocks", "fp8"} & set(checks):
        rows += fp8_block_rows(cfg, rng, state)
    if "fp8" in checks:
        rows += fp8_model_rows(pair, state)
    return rows


def track_numbers(cfg_name: str = "tiny", tf_compiled: bool = True) -> dict[str, float]:
    """The two numbers the asv benchmarks record: max |logits_TF - logits_Flax| over all positions
    (``model(tokens)`` and ``forward_aux``) and the routing agreement (1.0 for a dense-only config).

    Args:
        cfg_name: a suite config name (``SUITE_CONFIGS``) or a JSON config path.
        tf_compiled: run the TF model's XLA paths (the benchmarks measure the compiled model).

    Returns:
        ``{"max_abs_logits_error", "routing_agreement"}``.
    """
    rows = compare(named_config(cfg_name), checks=("logits",), tf_compiled=tf_compiled)
    logit_rows = [r for r in rows if r.component.startswith("logits")]
    routing = [r.routing_agreement for r in rows if r.routing_agreement is not None]
    return {"max_abs_logits_error": max(r.max_abs_err for r in logit_rows),
            "routing_agreement": min(routing) if routing else 1.0}


# ------------------------------------------------------------------ CLI

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness equivalence``: exit 0 when every check passes, 1 when one fails, 2 on bad input.

    Args:
        argv: the options after ``equivalence`` (``--config``, ``--state``, ``--seed``, ``--checks``, ...);
            None reads ``sys.argv[1:]``.

    Returns:
        the exit code: 0 all checks pass, 1 one fails, 2 bad input (unknown config or check, unloadable state).
    """
    from harness.io import CheckpointError, load_safetensors
    from harness.state import StateError, check_loadable

    parser = argparse.ArgumentParser(prog="python -m harness equivalence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", help=f"{'|'.join(SUITE_CONFIGS)}|PATH.json (default: tiny)")
    parser.add_argument("--state", help="a .safetensors canonical state (default: the TF model's seeded weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checks", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        cfg = named_config(args.config)
        checks = [c for c in args.checks.split(",") if c]
        unknown = sorted(set(checks) - set(CHECKS))
        if unknown:
            raise ConfigError(f"unknown checks {unknown}; choose from {list(CHECKS)}")
        state = None
        if args.state:
            state = load_safetensors(args.state)
            check_loadable(state, cfg, f"state {args.state}")
    except (ConfigError, CheckpointError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = compare(cfg, state, seed=args.seed, checks=checks)
    print(f"TF (tf_impl) vs Flax (reference), config {args.config}, "
          f"{'state ' + args.state if args.state else f'seeded state (seed {args.seed})'}")
    print(format_table(rows))
    failed = [r.component for r in rows if r.gate and not r.passed]
    numbers = summary(rows)
    print(f"\n{numbers['passed']}/{numbers['total']} checks passed, worst error {numbers['worst']:.3g} x its tolerance"
          + (f", {numbers['context']} context row(s) (INFO) not gating" if numbers["context"] else "")
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
