"""The training rows of the equivalence suite: loss parts, gradients, and one AdamW step.

The AdamW step is compared twice. First the optimizers alone, fed the same weights and the same gradients
for three steps (``TOLERANCES["adamw"]``: a few ulps of the weight, from fp32 rounding of the updates). Then each
framework's whole train step with its own gradients. AdamW's first update is ``lr*c*g/(c|g| + eps)``
(``c`` the clip factor), about ``lr*sign(g)`` where ``c|g|`` is far above ``eps``, but steep near ``eps``:
there a gradient difference ``d`` that the gradients row accepts moves the update by up to
``lr*eps'*d/(|g| - d + eps')^2`` with ``eps' = eps/c``. At the bench config the gradients are clipped by a
factor of ~10, so ``eps'`` is ~10x ``eps``: a weight whose gradient is 18x ``eps'`` moved 1.2e-6 differently
in TF and Flax, which a floor that ignored the clip factor judged at 1e-6. Entries are therefore judged
tightly (``step_weights``) where that sensitivity bound is below 1e-7, and against the bound elsewhere
(``step_floor``); both bounds are derived, not fitted.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np

from harness.config import TrainConfig
from harness.interop.rows import Row, compare_row, merge_rows
from harness.interop.tolerances import TOLERANCES


def train_configs(**fields: Any) -> tuple[TrainConfig, TrainConfig]:
    """The same AdamW settings as a ``tf_impl.train.TrainConfig`` and a ``reference.train.TrainConfig``."""
    from reference.train import TrainConfig as FlaxTC
    from tf_impl.train import TrainConfig as TfTC

    values = dict(lr=1e-3, warmup_steps=1, total_steps=10, min_lr_ratio=0.1, weight_decay=0.1, b1=0.9, b2=0.95,
                  eps=1e-8, clip_norm=1.0)
    values.update(fields)
    return TfTC(**values), FlaxTC(**values)


def training_rows(p: Any, state: Mapping[str, np.ndarray], checks: Sequence[str]) -> list[Row]:
    """Loss parts, gradients of every trained tensor, and one AdamW step with the bias update.

    Args:
        p: the comparison's models and inputs (``equivalence._Pair``: ``cfg``, ``tf``, ``flax``, ``tokens``).
        state: the canonical state both models hold; the train step starts a fresh TF model from it.
        checks: which of ``"loss"``, ``"gradients"`` and ``"train_step"`` to compare (other names are ignored).

    Returns:
        the rows of the requested comparisons.
    """
    from harness.interop.bridge import build_model, export_state, tf_loss_and_gradients
    from reference.train import gradients, init_optimizer, total_loss, train_step
    from tf_impl.train import Trainer

    rows: list[Row] = []
    need_grads = "gradients" in checks or "train_step" in checks
    parts_t, grads_t = tf_loss_and_gradients(p.tf, p.tokens, with_gradients=need_grads)
    grads_f = gradients(p.flax, p.tokens) if need_grads else {}
    if "train_step" in checks:
        tc_t, tc_f = train_configs()
        tf_model = build_model("tf", p.cfg, state, compiled=False)
        rec_t = Trainer(tf_model, p.cfg, tc_t, progress=False).train_step(p.tokens)
        flax_model = copy.copy(p.flax)  # train_step replaces the copy's params; p.flax keeps the originals
        _, loss_f, parts_f = train_step(flax_model, init_optimizer(flax_model, tc_f), p.tokens, 0, tc_f)
    else:
        loss_f, parts_f = total_loss(p.flax, p.tokens)
    parts_f = {"loss": float(loss_f), **{k: float(v) for k, v in parts_f.items()}}
    if "loss" in checks:
        for key, label in (("loss", "loss = ce + mtp + balance"), ("ce", "loss: main cross-entropy"),
                           ("mtp", "loss: MTP term"), ("balance", f"loss: balance term (alpha={p.cfg.balance_alpha})")):
            rows.append(compare_row(label, parts_t[key], parts_f[key], "loss"))
    if "gradients" in checks:
        if set(grads_t) != set(grads_f):
            only_t, only_f = sorted(set(grads_t) - set(grads_f)), sorted(set(grads_f) - set(grads_t))
            rows.append(Row("gradients", math.inf, math.inf, TOLERANCES["gradients"], None, False,
                            f"names differ: only TF {only_t[:3]}, only Flax {only_f[:3]}"))
        else:
            per = [compare_row(n, grads_t[n], grads_f[n], "gradients", note=n) for n in sorted(grads_f)]
            worst = max(per, key=lambda r: r.max_rel_err)
            failed = [r.note for r in per if not r.passed]
            rows.append(merge_rows(f"gradients w.r.t. all {len(per)} trained tensors", per,
                                   note=f"failed: {', '.join(failed[:5])}" if failed else f"worst {worst.note}"))
    if "train_step" in checks:
        rows.append(compare_row("train step: loss before the update (Trainer vs train_step)", rec_t["loss"],
                                parts_f["loss"], "loss"))
        rows.append(_optimizer_row(state, grads_f, tc_t, tc_f))
        rows += _step_rows(state, export_state(tf_model), export_state(flax_model), grads_t, grads_f, tc_f)
    return rows


# Optimizer-alone steps. At the first step m_hat = g and v_hat = g^2 whatever b1 and b2 are, so later steps
# feed the reference gradients times seeded per-element factors in [-2, 2] (a global factor would be undone
# by the clipping): then the moments, their bias corrections and the cosine schedule count.
ADAMW_STEPS = 3


def _optimizer_row(state, grads, tc_t, tc_f) -> Row:
    """``ADAMW_STEPS`` AdamW steps (clip, moments, decoupled decay, schedule) of both optimizers from the
    same weights with the same gradients: the optimizers alone, free of the gradients' own TF-vs-Flax difference.

    The optimizer is elementwise but for the clipping norm, so routed experts after the first of each layer
    are left out (they are most of a MoE model's weights: at bench that saves ~3 GB of peak memory); the
    clipping still acts, on the norm of the tensors kept."""
    import jax.numpy as jnp
    import tensorflow as tf

    from reference.optim import adamw_step, learning_rate
    from tf_impl.optim import AdamW

    names = [n for n in sorted(grads) if ".experts." not in n or ".experts.0." in n]
    variables = [tf.Variable(state[n]) for n in names]
    opt_t = AdamW(variables, tc_t)
    params, opt_f = {n: jnp.asarray(state[n]) for n in names}, None
    rng = np.random.default_rng(0)
    for step in range(ADAMW_STEPS):
        g = {n: grads[n] if step == 0 else (grads[n] * rng.uniform(-2, 2, grads[n].shape)).astype(np.float32)
             for n in names}
        opt_t.apply(tf.clip_by_global_norm([tf.constant(g[n]) for n in names], tc_t.clip_norm)[0])
        params, opt_f = adamw_step(tc_f, params, opt_f, {n: jnp.asarray(g[n]) for n in names},
                                   learning_rate(step, tc_f))
    per = [compare_row(n, v.numpy(), params[n], "adamw", note=n) for n, v in zip(names, variables)]
    worst = max(per, key=lambda r: r.error_over_tolerance)
    failed = [r.note for r in per if not r.passed]
    return merge_rows(f"AdamW alone: {ADAMW_STEPS} steps, same weights and gradients, {len(per)} of {len(grads)} "
                      f"tensors", per,
                      note=f"failed: {', '.join(failed[:5])}" if failed else f"worst {worst.note}")


def _step_rows(before, after_t, after_f, g_t, g_f, tc) -> list[Row]:
    """Post-step weights, each side with its own gradients. AdamW's first update ``lr*c*g/(c|g| + eps)``
    amplifies a gradient difference ``d`` by up to ``lr*eps'/(|g| - d + eps')^2`` (``eps' = eps/c``, ``c``
    the clip factor), so entries are judged tightly where that bound is below 1e-7 and against the bound
    itself elsewhere (TOLERANCES["step_floor"])."""
    norm = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in g_f.values()))
    eps = tc.eps / min(1.0, tc.clip_norm / max(norm, 1e-30))  # eps in units of the unclipped gradient
    step_tol = TOLERANCES["step_weights"]
    stable, sensitive, biases, n_sensitive, n_total = [], [], [], 0, 0
    for name in after_f:
        if name.endswith("gate.bias"):
            biases.append(compare_row(name, after_t[name], after_f[name], "gate_bias", note=name))
            continue
        g = np.abs(g_f[name]).astype(np.float64)
        d = 10.0 * float(np.abs(g_t[name] - g_f[name]).max())
        with np.errstate(divide="ignore"):
            bound = np.where(g > d, tc.lr * eps * d / np.square(g - d + eps), 2.0 * tc.lr)
        tight = bound <= 0.1 * step_tol.atol
        n_sensitive += int((~tight).sum())
        n_total += g.size
        if tight.any():
            stable.append(compare_row(name, after_t[name][tight], after_f[name][tight], "step_weights", note=name))
        if (~tight).any():
            w = after_f[name][~tight].astype(np.float64)
            allowed = bound[~tight] + step_tol.atol + step_tol.rtol * np.abs(w)
            diff = np.abs(after_t[name][~tight] - w)
            sensitive.append(Row(name, float(diff.max()), float((diff / allowed).max()), TOLERANCES["step_floor"],
                                 None, bool((diff <= allowed).all()), name, float((diff / allowed).max())))
    rows = []
    if stable:  # empty only when every entry is sensitive: then the bound below judges them all
        rows.append(merge_rows(f"train step: updated weights, AdamW insensitive to the gradient difference "
                               f"({n_total - n_sensitive} of {n_total})", stable))
    if sensitive:
        rows.append(merge_rows(f"train step: updated weights within AdamW's sensitivity bound ({n_sensitive} entries)",
                               sensitive))
    if biases:
        rows.append(merge_rows("train step: gate biases after the balancing update", biases))
    return rows


def step_rows(before: Mapping[str, np.ndarray], after_a: Mapping[str, np.ndarray], after_b: Mapping[str, np.ndarray],
              grads_a: Mapping[str, np.ndarray], grads_b: Mapping[str, np.ndarray], tc: TrainConfig) -> list[Row]:
    """Post-step weights of two AdamW steps from the same ``before`` state, each with its own gradients,
    judged as the TF-vs-Flax step is (see ``_step_rows``); used by experiments.distributed too.

    Args:
        before: the canonical state both steps started from (not read: the bounds need only the gradients).
        after_a: the state after the step under test (TF, or the distributed run).
        after_b: the state after the reference step; its names decide what is compared.
        grads_a: the gradients the step under test applied, by canonical name.
        grads_b: the reference step's gradients, whose clip factor and size set each entry's bound.
        tc: the AdamW settings both steps used (``lr``, ``eps``, ``clip_norm``).

    Returns:
        one merged row for the tightly judged weights, then one for the weights judged against their
        sensitivity bound and one for the gate biases, each of those two only when it has entries.
    """
    return _step_rows(before, after_a, after_b, grads_a, grads_b, tc)
