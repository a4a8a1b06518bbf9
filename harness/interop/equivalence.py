"""TF-vs-Flax numerical equivalence: the same fp32 weights in both models, identical inputs, one table.

``compare(cfg)`` loads one canonical state into ``tf_impl`` (the model under test) and ``reference``
(the Flax oracle) and compares, quantity by quantity: RMSNorm, RoPE tables, MLA (naive and absorbed),
gate scores / chosen experts / weights, MoE output, MTP output, full-model logits, the training loss
(main, MTP and balance parts), gradients of every parameter, one AdamW step, greedy generation in both
cache modes, and the FP8 mode (``harness.interop.equivalence_fp8``: block quantisation bit for bit against the
ml_dtypes oracle, and the FP8 model). Each quantity is judged against ``TOLERANCES`` (one table, one line
of justification each); routing (which expert set each token picks) is reported separately as an
agreement fraction, which must be 1.0. A row that cannot tell a bug from fp32 noise at this config (the
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
import math
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness.config import ConfigError, Dtype, ModelConfig

# ------------------------------------------------------------------ tolerances


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * scale``; ``scale`` is ``|b|`` per element (``per="element"``, numpy's
    allclose) or ``max|b|`` over the whole tensor (``per="tensor"``, for quantities such as gradients
    whose entries span many orders of magnitude, where elementwise rtol is meaningless near zero)."""

    atol: float
    rtol: float
    why: str
    per: str = "element"

    def text(self) -> str:
        """The tolerance as the report prints it, e.g. ``atol 1e-06, rtol 1e-05 of max|ref|``."""
        rel = f"rtol {self.rtol:.0e}" + (" of max|ref|" if self.per == "tensor" else "")
        return f"atol {self.atol:.0e}, {rel}" if self.rtol else f"atol {self.atol:.0e}"


# float32 has a unit roundoff of 6e-8. The two models compute the same formulas with different
# reduction orders and kernels (TF einsum / XLA vs jnp.einsum / XLA), so their outputs differ by a few
# ulps per reduction, compounded through the layers. Every tolerance below is a small multiple of that,
# set before measuring and never raised to make a run pass.
TOLERANCES: dict[str, Tolerance] = {
    "rmsnorm": Tolerance(1e-6, 1e-6, "one length-D reduction and a rsqrt on O(1) values: a few ulps"),
    "rope_freqs": Tolerance(0.0, 1e-6, "same closed form (YaRN ramp included); fp32 vs fp64 evaluation differs by ~1 ulp"),
    "rope_tables": Tolerance(1e-6, 0.0, "cos/sin in [-1, 1]: 16 fp32 ulps; covers fp32 rounding of t*freq up to "
                                        "|angle| ~ 16 rad, any wrong frequency or position is >= 1e-3"),
    "apply_rope": Tolerance(1e-6, 1e-6, "one complex multiply per pair on O(1) values with the tables above"),
    "mla": Tolerance(1e-5, 1e-5, "projections, a length-S softmax and two reductions of width <= N*H: a few ulps "
                                 "of O(1) outputs, times the ~10-ulp table difference"),
    "gate_scores": Tolerance(1e-6, 1e-6, "one length-D dot product then sigmoid/softmax, values in (0, 1)"),
    "gate_weights": Tolerance(1e-6, 1e-6, "original scores at the chosen experts, normalised, times route_scale"),
    "moe": Tolerance(1e-5, 1e-5, "SwiGLU of width F per expert, K weighted experts summed in a different order"),
    "mtp": Tolerance(1e-5, 1e-5, "two norms, a 2D->D projection and one block: as mla + moe"),
    "logits": Tolerance(1e-5, 0.0, "the P0.synthetic_validation criterion (HF PT<->Flax use 1e-5); logits are O(1-10)"),
    "loss": Tolerance(1e-6, 1e-6, "a mean of log-softmaxes: averaging shrinks the logits' independent ulp errors"),
    "gradients": Tolerance(1e-7, 1e-4, "backward reductions over B*T tokens; entries span decades, so the error is "
                                       "judged against each tensor's largest entry (per tensor)", per="tensor"),
    "adamw": Tolerance(1e-8, 2.0**-21, "the optimizer alone, 3 steps on the same gradients: each step rounds "
                                       "w - lr*(u + wd*w) once per side (<= 1/2 ulp of |w| each, so <= 3 ulps apart "
                                       "after 3 steps: rtol 4 ulps); u = m_hat/(sqrt(v_hat) + eps) carries ~10 "
                                       "roundings and the clip factor's reduction-order error (~1e-6 relative) of "
                                       "lr*|u| <= 3e-3 per step: atol"),
    "step_weights": Tolerance(1e-6, 1e-6, "each side with its own gradients, on entries where AdamW's sensitivity "
                                          "(see step_floor) bounds the update difference by 1e-7: fp32 rounding of "
                                          "w - lr*(u + wd*w) plus that, with 10x room"),
    "step_floor": Tolerance(1.0, 1.0, "AdamW's first update is lr*c*g/(c|g| + eps), c = min(1, clip/||g||): a gradient "
                                      "difference d moves it by up to lr*eps'*d/(|g| - d + eps')^2 (eps' = eps/c), and "
                                      "by up to 2*lr where |g| <= d (the sign may flip); d = 10*max|g_tf - g_ref| per "
                                      "tensor, the margin for the Trainer's own compiled gradient. Required: "
                                      "|dw_tf - dw_ref| <= that bound + the step_weights tolerance "
                                      "(atol/rtol: multiples of it)"),
    "gate_bias": Tolerance(0.0, 0.0, "bias += speed*sign(mean(load) - load): integer loads, identical when routing is"),
    "decode_logits": Tolerance(1e-5, 0.0, "as logits, at every greedy step; tokens must be identical"),
    "fp8_values": Tolerance(0.0, 0.0, "e4m3 codes and fp32 block scales against harness.interop.fp8_oracle: "
                                      "max(amax, 1e-4)/448 and x/scale each rounded once, then round-to-nearest-even; "
                                      "one right answer"),
    "fp8_matmul": Tolerance(1e-6, 1e-6, "e4m3 products summed per 128-block in fp32: the rounding error scales with "
                                        "sum|x*w|, not with the (cancelling) result, so per tensor", per="tensor"),
    "fp8_logits": Tolerance(1e-4, 0.0, "identical quantisation, but an fp32 1-ulp difference upstream can move an "
                                       "activation across an e4m3 rounding midpoint (up to 1/8 of one element, "
                                       "p ~ 1e-6 per element); 10x the fp32 logits bound. Gates only where the "
                                       "one-ulp control stays inside it (harness.interop.equivalence_fp8)"),
}
REQUIRED_ROUTING_AGREEMENT = 1.0  # on tiny configs with tie-free inputs, every token's expert set must agree

# "fp8_blocks" is the block quantisation and matmul alone (no model is built for it); "fp8" adds the FP8 model.
CHECKS = ("rmsnorm", "rope", "mla", "gate", "moe", "mtp", "logits", "loss", "gradients", "train_step",
          "generation", "fp8_blocks", "fp8")
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


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class Row:
    """One compared quantity. ``max_rel_err`` is ``max|a - b| / max|b|``; ``routing_agreement`` is the
    share of (layer, token) pairs whose expert sets agree, None where no routing is involved.
    ``over_tolerance`` is the worst ``|a - b| / (atol + rtol * scale)`` (1.0: at the limit; inf: an exact
    quantity that differs; NaN: not computed, then 0 or inf from ``passed``). ``gate=False`` marks a row
    shown as context only (verdict INFO): it never fails a run."""

    component: str
    max_abs_err: float
    max_rel_err: float
    tolerance: Tolerance
    routing_agreement: float | None
    passed: bool
    note: str = ""
    over_tolerance: float = math.nan
    gate: bool = True

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` or ``INFO`` (context, never gating), the word the table and the report show."""
        return "INFO" if not self.gate else "PASS" if self.passed else "FAIL"

    @property
    def error_over_tolerance(self) -> float:
        """The worst error in units of its tolerance (see ``over_tolerance``)."""
        if not math.isnan(self.over_tolerance):
            return self.over_tolerance
        return 0.0 if self.passed else math.inf


def _errors(a, b) -> tuple[float, float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return max_abs, (max_abs / scale if scale else (0.0 if max_abs == 0 else math.inf)), scale


def _within(a, b, tol: Tolerance) -> bool:
    """True when ``a`` is within ``tol`` of ``b``; a NaN or Inf anywhere is never within (equal NaNs included)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    if tol.per == "tensor":
        return bool(np.abs(a - b).max(initial=0.0) <= tol.atol + tol.rtol * np.abs(b).max(initial=0.0))
    return bool((np.abs(a - b) <= tol.atol + tol.rtol * np.abs(b)).all())


def _over_tolerance(a, b, tol: Tolerance) -> float:
    """Worst ``|a - b| / (atol + rtol * scale)``; where nothing is allowed, 0 if equal else inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.inf
    diff = np.abs(a - b)
    allowed = tol.atol + tol.rtol * (np.abs(b).max(initial=0.0) if tol.per == "tensor" else np.abs(b))
    allowed = np.broadcast_to(allowed, diff.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0), np.where(diff > 0, np.inf, 0.0))
    return float(ratio.max(initial=0.0))


def _row(component: str, a, b, key: str, routing: float | None = None, note: str = "") -> Row:
    tol = TOLERANCES[key]
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return Row(component, math.inf, math.inf, tol, routing, False,
                   f"shape TF {list(a.shape)} vs Flax {list(b.shape)}", math.inf)
    max_abs, max_rel, _ = _errors(a, b)
    ok = _within(a, b, tol) and (routing is None or routing >= REQUIRED_ROUTING_AGREEMENT)
    bad_t, bad_f = (int(x.size - np.count_nonzero(np.isfinite(x))) for x in (a, b))
    if bad_t or bad_f:
        note = f"non-finite values: TF {bad_t}, Flax {bad_f}" + (f"; {note}" if note else "")
    return Row(component, max_abs, max_rel, tol, routing, ok, note, _over_tolerance(a, b, tol))


def _merge(component: str, rows: Sequence[Row], note: str = "") -> Row:
    """One row summarising several comparisons of the same quantity (worst error, all must pass)."""
    routing = [r.routing_agreement for r in rows if r.routing_agreement is not None]
    failed = [r.note or r.component for r in rows if not r.passed]
    return Row(component, max(r.max_abs_err for r in rows), max(r.max_rel_err for r in rows), rows[0].tolerance,
               min(routing) if routing else None, not failed,
               note or (f"failed: {', '.join(failed[:3])}" if failed else ""),
               max(r.error_over_tolerance for r in rows))


def expert_set_agreement(indices_a, indices_b) -> float:
    """Share of rows (tokens) of ``[..., K]`` index arrays whose expert sets agree (order-free).

    Rows where both sides hold -1 (MTP padding) are left out.
    """
    a = np.sort(np.asarray(indices_a).reshape(-1, np.shape(indices_a)[-1]), -1)
    b = np.sort(np.asarray(indices_b).reshape(-1, np.shape(indices_b)[-1]), -1)
    valid = ~((a < 0).all(-1) & (b < 0).all(-1))
    return float((a == b).all(-1)[valid].mean()) if valid.any() else 1.0


# ------------------------------------------------------------------ the comparison

def reference_state(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The TF model's seeded state, with the gate biases set to seeded N(0, 0.02^2) values.

    A fresh model's biases are zero, which would leave the bias-for-selection-only path untested.
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
    return [_row("RMSNorm", tf_rms(x, w, p.cfg.rms_eps), flax_rms(jnp.asarray(x), jnp.asarray(w), p.cfg.rms_eps),
                 "rmsnorm")]


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
    freq_row = _row("RoPE freqs" + (" (YaRN)" if cfg.yarn_active else ""), tr.rope_freqs(cfg), fr.rope_freqs(cfg),
                    "rope_freqs", note=f"correction range TF {ranges[0]} Flax {ranges[1]}")
    if ranges[0] != ranges[1]:
        freq_row = replace(freq_row, passed=False)
    return [freq_row,
            _row(f"RoPE tables cos/sin [{cfg.max_seq_len}, R/2]", np.stack([tc, ts]), np.stack([fc, fs]), "rope_tables"),
            _row("RoPE apply (interleaved pairs)", rotated_tf, rotated_flax, "apply_rope")]


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
            per_layer.append(_row(f"layer {i}", out_tf, out_fx, "mla"))
        rows.append(_merge(f"MLA {mode} cache (prefill, {cfg.n_layers} layers)", per_layer))
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
        scores.append(_row(f"layer {layer_id}", st, sf, "gate_scores"))
        same = np.all(np.sort(it.numpy(), -1) == np.sort(np.asarray(i_f), -1), -1)
        # weights compared in expert order, on tokens that chose the same set (the others count in routing)
        order_t, order_f = np.argsort(it.numpy(), -1), np.argsort(np.asarray(i_f), -1)
        w_t = np.take_along_axis(wt.numpy(), order_t, -1)[same]
        w_f = np.take_along_axis(np.asarray(wf), order_f, -1)[same]
        weights.append(_row(f"layer {layer_id}", w_t, w_f, "gate_weights", routing=agree))
        indices.append(agree)
        x3 = x.reshape(*p.tokens.shape, cfg.dim)
        out_f, _, idx_f = flax_moe(jnp.asarray(x3))
        for differentiable in (True, False):
            out_t, (_, idx_t, _) = tf_moe(tf.constant(x3), differentiable)
            scheme = "tiled" if differentiable else "looped"
            moe_rows.append(_row(f"layer {layer_id} {scheme}", out_t, out_f, "moe",
                                 routing=expert_set_agreement(idx_t, idx_f)))
    n = len(layers)
    return [_merge(f"gate scores ({n} MoE layers)", scores),
            Row("gate chosen experts (set per token)", 0.0, 0.0, Tolerance(0.0, 0.0, "exact"), min(indices),
                min(indices) >= REQUIRED_ROUTING_AGREEMENT, f"{m} random tokens per layer"),
            _merge("gate weights (normalised x route_scale)", weights),
            _merge("MoE output (TF tiled and looped dispatch)", moe_rows)]


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
        rows.append(_row(f"MTP module {k}", out_t, out_f, "mtp", routing=agree))
    return [_merge(f"MTP module output h^k ({cfg.n_mtp_modules} module(s))", rows)]


def _routing_agreement(aux_tf, aux_flax) -> float | None:
    """Expert-set agreement over every MoE layer (main and MTP) of two ``forward_aux`` results."""
    idx_t = np.asarray(aux_tf["router_indices"])
    if not len(aux_flax["router_indices"]):
        return None
    agree, count = 0.0, 0
    for layer, idx_f in enumerate(aux_flax["router_indices"]):
        idx_f = np.asarray(idx_f)
        n = idx_f.shape[0] * idx_f.shape[1]
        agree += expert_set_agreement(idx_t[layer][:, : idx_f.shape[1]], idx_f) * n
        count += n
    return agree / count


def _check_logits(p: _Pair) -> list[Row]:
    logits_t = p.tf(p.tokens)
    logits_f = p.flax(p.tokens)
    aux_logits_t, aux_t = p.tf.forward_aux(p.tokens)
    aux_logits_f, aux_f = p.flax.forward_aux(p.tokens)
    routing = _routing_agreement(aux_t, aux_f)
    rows = [_row(f"logits, all {p.tokens.shape[1]} positions (model(tokens))", logits_t, logits_f, "logits"),
            _row("logits via forward_aux (training path)", aux_logits_t, aux_logits_f, "logits", routing=routing)]
    for k, (a, b) in enumerate(zip(aux_t["mtp_logits"], aux_f["mtp_logits"]), start=1):
        rows.append(_row(f"MTP logits, module {k}", a, b, "logits"))
    if routing is not None:
        rows.append(_row("expert load per MoE layer", aux_t["expert_load"], aux_f["expert_load"], "gate_bias",
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
        row = _row(f"greedy generation, {mode} cache ({len(prompts)} prompts x {steps} steps)", logits_t[:max(n, 1)],
                   logits_f[:max(n, 1)], "decode_logits",
                   note="tokens identical" if same.all() else f"tokens diverge at step {first}")
        rows.append(replace(row, passed=row.passed and bool(same.all())))
    public_t = np.asarray(p.tf.generate(prompts, steps))    # both return the new tokens only, [B, steps]
    public_f = np.asarray(p.flax.generate(prompts, steps))
    rows.append(Row("generate() public API, greedy (absorb)", 0.0, 0.0, Tolerance(0.0, 0.0, "exact"), None,
                    bool(np.array_equal(public_t, public_f)),
                    "tokens identical" if np.array_equal(public_t, public_f) else "tokens differ"))
    return rows


def compare(cfg: ModelConfig, state: Mapping[str, np.ndarray] | None = None, seed: int = 0,
            checks: Sequence[str] = ALL, batch: int = 2, seq_len: int = 40, tf_compiled: bool = False) -> list[Row]:
    """Load one canonical state into both models and compare every quantity in ``checks``.

    ``state`` defaults to :func:`reference_state` (the TF model's seeded weights, nonzero gate biases);
    a given state is checked against ``cfg`` first (``harness.state.StateError`` lists every mismatch).
    Losses and gradients need a balance term to test, so a config with MoE layers and
    ``balance_alpha == 0`` is compared with ``balance_alpha = 0.01`` (it changes nothing else).
    The inputs are ``batch`` sequences of ``seq_len`` seeded random tokens; random continuous inputs
    make routing ties (two selection scores within an ulp) vanishingly rare. ``tf_compiled`` runs the
    TF model's XLA paths (``Transformer(compiled=True)``); the default runs the same code eagerly,
    which skips minutes of XLA compilation on CPU.
    """
    from harness.interop.bridge import build_model
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
    if "generation" in checks:
        rows += _check_generation(pair)
    if {"fp8_blocks", "fp8"} & set(checks):
        rows += fp8_block_rows(cfg, rng, state)
    if "fp8" in checks:
        rows += fp8_model_rows(pair, state)
    return rows


def track_numbers(cfg_name: str = "tiny", tf_compiled: bool = True) -> dict[str, float]:
    """The two numbers the asv benchmarks record: max |logits_TF - logits_Flax| over all positions
    (``model(tokens)`` and ``forward_aux``) and the routing agreement (1.0 for a dense-only config)."""
    rows = compare(named_config(cfg_name), checks=("logits",), tf_compiled=tf_compiled)
    logit_rows = [r for r in rows if r.component.startswith("logits")]
    routing = [r.routing_agreement for r in rows if r.routing_agreement is not None]
    return {"max_abs_logits_error": max(r.max_abs_err for r in logit_rows),
            "routing_agreement": min(routing) if routing else 1.0}


def summary(rows: Sequence[Row]) -> dict[str, float]:
    """The verdict of a run in numbers: gating rows ``passed`` out of ``total``, their ``worst`` error in units
    of its tolerance (1.0: at the limit), and the ``context`` rows (INFO) left out of both."""
    gating = [r for r in rows if r.gate]
    return {"passed": sum(bool(r.passed) for r in gating), "total": len(gating),
            "worst": max((r.error_over_tolerance for r in gating), default=0.0), "context": len(rows) - len(gating)}


# ------------------------------------------------------------------ CLI

def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table: errors, tolerance, routing agreement and verdict per component.

    A failing row's note is appended to its verdict so the reason is visible without rerunning.
    """
    from tabulate import tabulate

    body = [[r.component, f"{r.max_abs_err:.2e}", f"{r.max_rel_err:.2e}", r.tolerance.text(),
             f"{r.error_over_tolerance:.2g}", "-" if r.routing_agreement is None else f"{r.routing_agreement:.2%}",
             r.verdict + (f" ({r.note})" if r.note and not (r.passed and r.gate) else "")] for r in rows]
    return tabulate(body, headers=["component", "max abs error", "max rel error", "tolerance", "error/tolerance",
                                   "routing agreement", "verdict"])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness equivalence``: exit 0 when every check passes, 1 when one fails, 2 on bad input."""
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
