"""The FP8 rows of the equivalence suite: block quantisation against the ml_dtypes oracle, the blocked
matmul TF against Flax, and the FP8-mode model with a conditioning control.

Block quantisation has one right answer per element (``harness.interop.fp8_oracle``: IEEE division rounded once,
then ml_dtypes' round-to-nearest-even to e4m3), so each framework is compared with the oracle, bit for
bit, and a failing row names the framework that deviates. Three inputs: the tie cases (quotients exactly
on e4m3 midpoints and one fp32 ulp either side, subnormals, both signs, 448, the 1e-4 scale floor), every
FP8 weight of the config (the real weights when a state is given), and activations of every FP8 input width.
TF is checked eagerly and under XLA (grappler and XLA rewrite a division by a constant; the model runs
both ways), Flax under ``jax.jit``.

The FP8-mode model cannot always be compared at a fixed tolerance. e4m3 keeps 3 mantissa bits, so the two
frameworks' last-ulp fp32 differences (legitimate: different reduction orders) move a value that sits
within an ulp of an e4m3 rounding midpoint to the neighbouring code, a change of up to 1/8 of that element;
a routing decision downstream can then flip, and the flip cascades. How likely that is grows with the
number of quantised elements. ``fp8_model_rows`` therefore measures the conditioning first: the Flax FP8
model against itself with the embeddings moved by one fp32 ulp. Where that control stays inside the
``fp8_logits`` tolerance with identical routing, the TF-vs-Flax rows gate as usual; where it does not, the
comparison cannot separate a bug from fp32 noise, and the rows are shown as context (verdict INFO) with the
control's numbers beside them. The block rows above, which have no such amplification, always gate.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from harness.config import Dtype, ModelConfig
from harness.interop import fp8_oracle as oracle
from harness.interop.rows import Row, compare_row, expert_set_agreement, merge_rows, routing_agreement
from harness.interop.tolerances import TOLERANCES
from harness.state import expected_shapes

_NOT_FP8 = ("embed.weight", "head.weight", "gate.weight")  # fp32 in FP8 mode, as in DeepSeek-V3


def fp8_weight_names(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The canonical names of the weights that FP8 mode quantises: every linear weight [out, in] except the
    embedding, the output head and the gates (norms and biases are 1-D)."""
    return [n for n, s in shapes.items() if len(s) == 2 and not n.endswith(_NOT_FP8)]


def _quantisers() -> dict[str, tuple[Callable, Callable]]:
    """``{side: (quantize_weight, quantize_act)}`` returning numpy (e4m3 codes, fp32 scales)."""
    import jax
    import jax.numpy as jnp
    import tensorflow as tf

    from reference import fp8 as ff
    from tf_impl import fp8 as tf8

    def tf_side(compiled: bool):
        def per_shape(fn):  # one XLA function per input shape: a shape is one trace, not a "retrace"
            cache: dict[tuple[int, ...], Callable] = {}

            def run(v):
                if compiled and v.shape not in cache:
                    cache[v.shape] = tf.function(fn, jit_compile=True)
                return tuple(np.asarray(t.numpy()) for t in (cache[v.shape] if compiled else fn)(tf.constant(v)))
            return run
        return per_shape(tf8.quantize_weight), per_shape(tf8.quantize_act)

    jw, ja = jax.jit(ff.quantize_weight), jax.jit(ff.quantize_act)
    return {"TF eager": tf_side(False), "TF XLA": tf_side(True),
            "Flax jit": (lambda w: tuple(np.asarray(t) for t in jw(jnp.asarray(w))),
                         lambda x: tuple(np.asarray(t) for t in ja(jnp.asarray(x))))}


class _Tally:
    """Worst difference from the oracle per side, and the first differing input of each side."""

    def __init__(self):
        self.max_abs, self.max_rel, self.first = 0.0, 0.0, {}

    def add(self, side: str, got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], what: str,
            inputs: np.ndarray) -> None:
        (q, s), (q_ref, s_ref) = got, want
        if q.shape != q_ref.shape or s.shape != s_ref.shape:
            self.max_abs = self.max_rel = np.inf
            self.first.setdefault(side, f"{what}: shape {q.shape} vs oracle {q_ref.shape}")
            return
        ref = q_ref.astype(np.float32)
        diff = max(float(np.abs(q.astype(np.float32) - ref).max(initial=0.0)),
                   float(np.abs(s - s_ref).max(initial=0.0)))
        self.max_abs = max(self.max_abs, diff)
        self.max_rel = max(self.max_rel, diff / max(float(np.abs(ref).max(initial=0.0)), 1e-30))
        codes = oracle.code_mismatch(q, q_ref, inputs)
        if codes and side not in self.first:
            self.first[side] = f"{what}: {codes}"
        elif not np.array_equal(s, s_ref) and side not in self.first:
            self.first[side] = f"{what}: {int((s != s_ref).sum())} block scales differ from max(amax, 1e-4)/448"

    def row(self, component: str):
        note = "; ".join(f"{side} {text}" for side, text in self.first.items())
        ok = not self.first and np.isfinite(self.max_abs)
        return Row(component, self.max_abs, self.max_rel, TOLERANCES["fp8_values"], None, ok, note,
                   over_tolerance=0.0 if ok else np.inf)


def _activations(widths: list[int], rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per input width, 16 rows of N(0, 1) times a per-row magnitude over 6 decades, the first row under the
    1e-4 floor (a block of tiny activations takes the floor's scale)."""
    out = {}
    for width in widths:
        x = rng.standard_normal((16, width)) * np.logspace(-6, 2, 16)[:, None]
        out[width] = x.astype(np.float32)
    return out


def fp8_block_rows(cfg: ModelConfig, rng: np.random.Generator, state: Mapping[str, np.ndarray] | None = None) -> list:
    """Rows: e4m3 codes and block scales of every side against the oracle, on the tie cases, on every FP8
    weight of ``cfg`` (``state``'s values, or seeded N(0, 1/in) weights of each distinct shape) and on
    activations of every FP8 input width; then the blocked matmul (plain and grouped) TF against Flax.

    Args:
        cfg: the model config whose FP8 weight names and shapes are quantised.
        rng: draws the stand-in weights (when ``state`` is None) and the activations.
        state: a canonical state whose FP8 weights are quantised; None uses one seeded weight per shape.

    Returns:
        the rows (Row), oracle checks first, then the matmul comparisons.
    """
    shapes = expected_shapes(cfg)
    names = fp8_weight_names(shapes)
    if state is None:  # one seeded weight per distinct shape: the blocking is all that depends on the shape
        distinct = {shapes[n]: n for n in names}
        weights = {n: (rng.standard_normal(s) * s[1] ** -0.5).astype(np.float32) for s, n in distinct.items()}
    else:
        weights = {n: np.asarray(state[n], np.float32) for n in names}
    sides = _quantisers()
    ties, model_w, model_x = _Tally(), _Tally(), _Tally()
    tie_w, tie_x = oracle.tie_weight(), oracle.tie_activations()
    acts = _activations(sorted({w.shape[1] for w in weights.values()}), rng)
    for side, (qw, qa) in sides.items():
        ties.add(side, qw(tie_w), oracle.quantize_weight(tie_w), "tie weight", tie_w)
        ties.add(side, qa(tie_x), oracle.quantize_act(tie_x), "tie activations", tie_x)
        for name, w in weights.items():
            model_w.add(side, qw(w), oracle.quantize_weight(w), name, w)
        for width, x in acts.items():
            model_x.add(side, qa(x), oracle.quantize_act(x), f"activations of width {width}", x)
    where = "weights of the state" if state is not None else "seeded weights, one per distinct shape"
    return [ties.row("fp8 e4m3 tie cases: codes and scales vs ml_dtypes (TF eager, TF XLA, Flax)"),
            model_w.row(f"fp8 quantize_weight: {len(weights)} FP8 {where} vs ml_dtypes"),
            model_x.row(f"fp8 quantize_act: widths {sorted(acts)} vs ml_dtypes"),
            _matmul_row(rng)]


def _matmul_row(rng: np.random.Generator):
    """The blocked product TF against Flax: one [O, I] weight spanning 5 decades and a grouped [G, O, I]
    one (the MoE's tiles; Flax has no grouped form, so each group is its plain product)."""
    import jax.numpy as jnp

    from reference import fp8 as ff
    from tf_impl import fp8 as tf8

    w = (rng.standard_normal((200, 300)) * np.logspace(-3, 2, 300)).astype(np.float32)
    x = (rng.standard_normal((5, 300)) * 3).astype(np.float32)
    x[0, :128] = 1e-6  # a block whose amax is below MIN_AMAX: the scale floor
    wg = (rng.standard_normal((3, 130, 260)) * 260**-0.5).astype(np.float32)
    xg = rng.standard_normal((3, 7, 260)).astype(np.float32)
    grouped_f = np.stack([np.asarray(ff.fp8_matmul(jnp.asarray(xg[g]), jnp.asarray(wg[g]))) for g in range(3)])
    return merge_rows("fp8 matmul (1x128 x 128x128 blocks; plain and grouped)",
                      [compare_row("plain", tf8.fp8_matmul(x, w), ff.fp8_matmul(jnp.asarray(x), jnp.asarray(w)),
                                   "fp8_matmul"),
                       compare_row("grouped", tf8.fp8_matmul(xg, wg), grouped_f, "fp8_matmul")])


def _one_ulp_up(state: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``state`` with every embedding entry moved by one fp32 ulp, up or down at random."""
    emb = np.asarray(state["embed.weight"], np.float32)
    toward = np.where(rng.random(emb.shape) < 0.5, -np.inf, np.inf).astype(np.float32)
    return {**state, "embed.weight": np.nextafter(emb, toward)}


def _flax_routing_agreement(aux_a: Mapping[str, Any], aux_b: Mapping[str, Any]) -> float | None:
    """Expert-set agreement over every MoE layer of two Flax ``forward_aux`` results (None: no MoE layer)."""
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(aux_a["router_indices"], aux_b["router_indices"])]
    if not pairs:
        return None
    sizes = [a.shape[0] * a.shape[1] for a, _ in pairs]
    return sum(expert_set_agreement(a, b) * n for (a, b), n in zip(pairs, sizes)) / sum(sizes)


def fp8_model_rows(pair: Any, state: Mapping[str, np.ndarray]) -> list:
    """FP8-mode logits TF against Flax (both entry points), gated only where a one-ulp control shows that
    the comparison is well conditioned (see the module docstring).

    Args:
        pair: the comparison's models and inputs (``equivalence._Pair``); FP8 twins of its config are built.
        state: the canonical state both FP8 twins load (the control loads it one ulp up).

    Returns:
        the rows (Row) of the FP8 logits and routing comparisons.
    """
    from dataclasses import replace

    from harness.interop.bridge import build_model

    cfg8 = pair.cfg.replace(dtype=Dtype.FP8)
    tf_model, flax_model = build_model("tf", cfg8, state, compiled=pair.tf.compiled), build_model("flax", cfg8, state)
    logits_t, aux_t = tf_model.forward_aux(pair.tokens)
    logits_f, aux_f = flax_model.forward_aux(pair.tokens)
    control = build_model("flax", cfg8, _one_ulp_up(state, pair.rng))
    logits_c, aux_c = control.forward_aux(pair.tokens)
    routing, routing_c = routing_agreement(aux_t, aux_f), _flax_routing_agreement(aux_f, aux_c)
    spread = float(np.abs(np.asarray(logits_f) - np.asarray(logits_c)).max())
    conditioned = spread <= TOLERANCES["fp8_logits"].atol and routing_c in (None, 1.0)
    control_note = (f"control: Flax FP8 vs itself with the embeddings 1 ulp off moves logits by {spread:.3g}"
                    + ("" if routing_c is None else f", routing {routing_c:.2%}"))
    rows = [compare_row("fp8 mode: logits (forward_aux)", logits_t, logits_f, "fp8_logits", routing=routing),
            compare_row("fp8 mode: logits (model(tokens))", tf_model(pair.tokens), flax_model(pair.tokens),
                        "fp8_logits")]
    if conditioned:
        return [replace(r, note=r.note or control_note) for r in rows]
    return [replace(r, gate=False, note=f"ill-conditioned, not gating: {control_note}") for r in rows]
