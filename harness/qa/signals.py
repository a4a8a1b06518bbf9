"""Live training signals: numbers the training loop measures, checked against known failure thresholds.

Each check returns ``Finding`` records: the knowledge-base issue it points to, a log-ready message
quoting the measured numbers, and the weight of that evidence. The messages are themselves matched
by the knowledge base's patterns, so a log that contains them is diagnosed too, and
``signals_from_log`` pulls ``loss=...``, ``grad_norm=...``, ``lr=...`` values and ``expert_load=[...]``
vectors out of a log and runs the checks on them.

- ``diagnose_expert_load``: per-expert token counts (routing collapse, imbalance beyond sampling noise).
- ``diagnose_loss_history`` / ``loss_spike_count``: non-finite losses, spikes, divergence.
- ``diagnose_training_records``: the per-step records of a trainer (loss, gradient norm, learning
  rate): a gradient norm that overflows to inf/NaN, or collapses to 0, right after a large update;
  ``explain_divergence`` applies it to the records a ``TrainingDiverged`` carries.
- ``loss_spike_problems``: the loss-spike rule the Trainer's checkpoint-health verdict takes.
- ``diagnose_fp8_range``: values a cast to float8 e4m3 would turn into NaN or zero.
- ``diagnose_input_pipeline``: the share of step time spent waiting for data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Finding:
    """A live check's verdict: the issue it points to, a log-ready message, the measured numbers."""

    issue_id: str
    message: str
    weight: float
    metrics: dict = field(default_factory=dict)


# Expert load thresholds. IMBALANCE_CV is the roadmap's "expert utilization variance < 5%", read as
# a coefficient of variation (std / mean) of per-expert token counts. A finite batch cannot show a
# CV below its sampling noise even with perfectly uniform routing: for N assignments over E experts,
# N * CV**2 follows chi-square with E-1 degrees of freedom. So imbalance is flagged only when the CV
# exceeds 0.05 AND the chi-square statistic exceeds its 99.9% quantile (noise is ruled out).
IMBALANCE_CV = 0.05
IMBALANCE_P = 0.001
# Collapse: experts with no tokens although the mean load is >= 5 (chance of an empty expert under
# uniform routing is then below e^-5 = 0.7%) make up a quarter of the experts, or the busiest 10%
# of experts (at least one) carry half of all assignments.
COLLAPSE_MIN_MEAN = 5.0
COLLAPSE_DEAD_FRACTION = 0.25
COLLAPSE_TOP_SHARE = 0.5


def _chi2_quantile(dof: int, p_upper: float) -> float:
    """Upper ``p_upper`` quantile of chi-square(dof), Wilson-Hilferty approximation (no scipy)."""
    z = math.sqrt(2.0) * _erfinv(1.0 - 2.0 * p_upper)
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _erfinv(y: float) -> float:
    """Inverse error function by Newton's method on math.erf (accurate to ~1e-12)."""
    x = 0.0
    for _ in range(100):
        step = (math.erf(x) - y) / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
        x -= step
        if abs(step) < 1e-13:
            break
    return x


def expert_load_stats(counts: Sequence[float]) -> dict:
    """Coefficient of variation, dead experts, top share and chi-square of per-expert token counts.

    Args:
        counts: tokens (or token-expert assignments) routed to each expert, of shape [E].

    Returns:
        dict with ``cv``, ``n_experts``, ``total``, ``mean``, ``dead`` (experts with 0 tokens),
        ``top_share`` (share of the busiest 10% of experts), ``chi2`` and ``chi2_limit``.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.size < 2:
        raise ValueError(f"expert load needs counts for >= 2 experts, got {c.size}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"expert load counts must be finite and >= 0, got {c.tolist()}")
    total, mean = float(c.sum()), float(c.mean())
    cv = float(c.std() / mean) if mean > 0 else float("inf")
    n_top = max(1, math.ceil(0.1 * c.size))
    return {
        "n_experts": int(c.size),
        "total": total,
        "mean": mean,
        "cv": cv,
        "dead": int(np.sum(c == 0)),
        "top_share": float(np.sort(c)[::-1][:n_top].sum() / total) if total > 0 else 1.0,
        "n_top": n_top,
        "chi2": total * cv * cv if mean > 0 else float("inf"),
        "chi2_limit": _chi2_quantile(c.size - 1, IMBALANCE_P),
    }


def diagnose_expert_load(counts: Sequence[float], layer: str | int | None = None) -> list[Finding]:
    """Flag routing collapse or load imbalance in per-expert token counts.

    Args:
        counts: tokens routed to each expert in one MoE layer, of shape [E].
        layer: optional layer name or index for the message.

    Returns:
        [] when the load is balanced within noise, else one Finding (collapse or imbalance) whose
        message quotes the measured CV, dead experts and top share.
    """
    s = expert_load_stats(counts)
    where = f" in layer {layer}" if layer is not None else ""
    numbers = (
        f"CV={s['cv']:.3f}, {s['dead']} of {s['n_experts']} experts idle, "
        f"busiest {s['n_top']} take {100 * s['top_share']:.1f}% of {s['total']:.0f} assignments"
    )
    if s["total"] == 0:
        return [Finding("moe_routing_collapse", f"expert routing collapse{where}: no tokens routed at all", 0.95, s)]
    collapsed = s["mean"] >= COLLAPSE_MIN_MEAN and (
        s["dead"] >= COLLAPSE_DEAD_FRACTION * s["n_experts"] or s["top_share"] >= COLLAPSE_TOP_SHARE
    )
    if collapsed:
        return [Finding("moe_routing_collapse", f"expert routing collapse{where}: {numbers}", 0.95, s)]
    if s["cv"] > IMBALANCE_CV and s["chi2"] > s["chi2_limit"]:
        msg = (
            f"expert load imbalance{where}: {numbers}; CV above {IMBALANCE_CV} and beyond sampling noise "
            f"(chi2={s['chi2']:.1f} > {s['chi2_limit']:.1f})"
        )
        return [Finding("moe_routing_collapse", msg, 0.85, s)]
    return []


# Loss spikes: a step whose loss exceeds the median of the previous `window` finite losses by more
# than `threshold` robust standard deviations (1.4826 * median absolute deviation). With Gaussian
# noise, 6 robust stds is exceeded once in ~1e9 steps, so healthy noisy training gives 0 spikes.
# The robust std is floored at 0.1% of the median so that a flat loss does not make every wobble a spike.
SPIKE_WINDOW = 20
SPIKE_THRESHOLD = 6.0
_SPIKE_MIN_HISTORY = 5
_SPIKE_REL_FLOOR = 1e-3


def _spike_steps(losses: np.ndarray, window: int, threshold: float) -> list[int]:
    history: list[float] = []
    spikes = []
    for i, value in enumerate(losses):
        if not np.isfinite(value):
            spikes.append(i)
            continue
        recent = np.asarray(history[-window:])
        if recent.size >= _SPIKE_MIN_HISTORY:
            med = float(np.median(recent))
            robust_std = max(1.4826 * float(np.median(np.abs(recent - med))), _SPIKE_REL_FLOOR * abs(med), 1e-12)
            if value > med + threshold * robust_std:
                spikes.append(i)
        history.append(float(value))
    return spikes


def loss_spike_count(losses: Sequence[float], window: int = SPIKE_WINDOW, threshold: float = SPIKE_THRESHOLD) -> int:
    """Number of loss spikes: non-finite steps plus steps far above the recent median.

    A step is a spike when its loss is NaN/Inf, or when it exceeds the median of the previous
    ``window`` finite losses by more than ``threshold`` robust standard deviations
    (1.4826 * MAD, floored at 0.1% of the median). Steps with fewer than 5 earlier finite losses
    are only checked for NaN/Inf. Training code uses this for "load balancing maintains training
    stability" (0 spikes = stable).

    Args:
        losses: the loss per step, in step order, of shape [steps].
        window: how many previous finite losses form the reference.
        threshold: spike distance in robust standard deviations.

    Returns:
        the number of spike steps (int).
    """
    if window < _SPIKE_MIN_HISTORY:
        raise ValueError(f"window={window} must be >= {_SPIKE_MIN_HISTORY}")
    if threshold <= 0:
        raise ValueError(f"threshold={threshold} must be positive")
    return len(_spike_steps(np.asarray(losses, dtype=np.float64).reshape(-1), window, threshold))


def diagnose_loss_history(
    losses: Sequence[float], window: int = SPIKE_WINDOW, threshold: float = SPIKE_THRESHOLD
) -> list[Finding]:
    """Flag non-finite losses, loss spikes and divergence in a loss history.

    Divergence: the median of the last ``span`` finite losses is above both the median of the
    first ``span`` and 1.5 times the lowest loss seen (the run got clearly worse, not noisier),
    with ``span = min(window, finite steps // 2)`` and at least 5.

    Args:
        losses: the loss per step, in step order, of shape [steps].
        window: reference window for spikes and divergence.
        threshold: spike distance in robust standard deviations (see loss_spike_count).

    Returns:
        a list of Findings, at most one each for non-finite values, spikes and divergence.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    findings = []
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        before = x[: bad[0]][np.isfinite(x[: bad[0]])]
        last_good = f"{before[-1]:.4g}" if before.size else "none"
        findings.append(Finding(
            "nan_inf_loss",
            f"loss history: non-finite loss at {bad.size} of {x.size} steps, first at step {bad[0]} "
            f"(last finite loss before it: {last_good})",
            0.9, {"first_nonfinite_step": int(bad[0]), "nonfinite_steps": int(bad.size)},
        ))
    spikes = [i for i in _spike_steps(x, window, threshold) if np.isfinite(x[i])]
    if spikes:
        findings.append(Finding(
            "nan_inf_loss",
            f"loss history: spike at {len(spikes)} step(s), first ones {spikes[:10]} (> median of previous {window} "
            f"+ {threshold} robust std)",
            0.6, {"spike_steps": spikes},
        ))
    finite = x[np.isfinite(x)]
    span = min(window, finite.size // 2)
    if span >= _SPIKE_MIN_HISTORY:
        first, last = float(np.median(finite[:span])), float(np.median(finite[-span:]))
        if last > first and last > 1.5 * float(finite.min()):
            findings.append(Finding(
                "nan_inf_loss",
                f"loss history: divergence, median loss rose from {first:.4g} (first {span} finite steps) to "
                f"{last:.4g} (last {span}); best was {float(finite.min()):.4g}",
                0.7, {"first_median": first, "last_median": last},
            ))
    return findings


def loss_spike_problems(losses: Sequence[float], since: int) -> list[str]:
    """The checkpoint-health rule on a loss history: the spikes among ``losses[since:]``, as one phrase.

    ``tf_impl.train.Trainer(health=loss_spike_problems)`` records the verdict in each checkpoint's
    manifest, so a checkpoint saved during a spiking (diverging) stretch is not counted as a good one.
    Spikes are ``loss_spike_count``'s, each judged against the losses before it (the earlier history
    included), so the phrase counts only the spikes that happened since ``since``.

    Args:
        losses: the loss per step of the whole run, oldest first.
        since: the index of the first step since the last checkpoint.

    Returns:
        ``["N loss spike(s)"]``, or [] when there was none.
    """
    spikes = loss_spike_count(losses) - loss_spike_count(losses[:since])
    return [f"{spikes} loss spike(s)"] if spikes else []


def explain_divergence(error: BaseException) -> str:
    """The message of a ``tf_impl.train.TrainingDiverged`` followed by the diagnosis of the records it carries.

    The Trainer only says where it stopped and carries the per-step records (``error.records``: loss,
    gradient norm, learning rate); ``diagnose_training_records`` names the pathology, e.g. an lr too
    high for AdamW.

    Args:
        error: the exception; one without ``records`` gets the loss-free verdict.

    Returns:
        ``"<message> Diagnosis: <findings>"``, one line.
    """
    findings = diagnose_training_records(list(getattr(error, "records", None) or []))
    diagnosis = "; ".join(f.message for f in findings) or "no known loss or gradient-norm pathology matched"
    return f"{error} Diagnosis: {diagnosis}"


# Learning-rate divergence. AdamW moves every weight by about ``lr`` per step whatever the gradient's
# scale (its update is m / sqrt(v), about 1 per parameter), so an lr near the weights' own scale
# (~0.02-0.1 at init) throws them out of range in a step or two. DeepSeek-V3 peaks at 2.2e-4; an lr of
# 1e-2 or more is far outside what transformer training uses. A gradient norm that then overflows to
# inf/NaN, or falls to exactly 0 (every unit saturated), after such updates is the classic divergence.
LR_HIGH = 1e-2
# A gradient norm this many times the median of the earlier ones is an explosion in progress.
GRAD_NORM_GROWTH = 1e3


def _lr_phrase(lrs: np.ndarray) -> str:
    finite = lrs[np.isfinite(lrs) & (lrs > 0)]
    if not finite.size:
        return "learning rate not logged"
    return f"lr up to {finite.max():.3g} (last {finite[-1]:.3g})"


def diagnose_training_records(records: Sequence[Mapping[str, float]]) -> list[Finding]:
    """Flag a divergence from a too-high learning rate in a trainer's per-step records, plus loss pathologies.

    The gradient-norm checks, in order of evidence (one Finding at most):

    - the norm became inf/NaN after at least one update: a ``lr_divergence`` Finding, weight 0.9 when
      an lr >= LR_HIGH was applied, else 0.6;
    - inf/NaN at the very first step, before any update: not the learning rate (a numerics bug in the
      loss or a layer), a ``nan_inf_loss`` Finding;
    - the norm fell to exactly 0 after a non-zero one, with an lr >= LR_HIGH: the update saturated
      every unit (a dead network), ``lr_divergence``, weight 0.8;
    - the norm grew GRAD_NORM_GROWTH-fold over the median of the earlier ones: ``lr_divergence``, 0.6.

    Args:
        records: one dict per step, oldest first, with ``loss`` and optionally ``grad_norm`` and ``lr``
            (the Trainer's records; its failing step carries lr 0, the update not being applied).

    Returns:
        the Findings of diagnose_loss_history on the losses, then the gradient-norm Finding if any.
    """
    def column(key: str) -> np.ndarray:
        return np.asarray([float(r.get(key, np.nan)) for r in records], dtype=np.float64)

    losses, norms, lrs = column("loss"), column("grad_norm"), column("lr")
    findings = diagnose_loss_history(losses) if len(records) else []
    logged = np.flatnonzero([("grad_norm" in r) for r in records])
    if not any("grad_norm" in r for r in records):
        return findings
    bad = [i for i in range(len(records)) if "grad_norm" in records[i] and not math.isfinite(norms[i])]
    applied = lrs[np.isfinite(lrs) & (lrs > 0)]
    high = bool(applied.size and applied.max() >= LR_HIGH)
    if bad:
        step = bad[0]
        if step == 0:
            findings.append(Finding(
                "nan_inf_loss",
                f"gradient norm non-finite ({norms[0]}) at the first step, before any update: a numerics bug in the "
                f"loss or a layer (log of 0, division by 0, overflow), not the learning rate",
                0.8, {"step": 0}))
            return findings
        phrase = _lr_phrase(lrs[:step])
        findings.append(Finding(
            "lr_divergence",
            f"gradient norm diverged: grad_norm={norms[step]} at step {step} after finite norms, following updates "
            f"with {phrase}" + (f" (>= {LR_HIGH:g}: too high for AdamW)" if high else ""),
            0.9 if high else 0.6, {"step": step, "lr_max": float(applied.max()) if applied.size else None}))
        return findings
    nonzero = [i for i in logged if norms[i] > 0]
    zero_after = [i for i in logged if norms[i] == 0 and nonzero and i > nonzero[0]]
    if zero_after and high:
        step = zero_after[0]
        findings.append(Finding(
            "lr_divergence",
            f"gradient norm collapsed to 0 at step {step} after {norms[nonzero[0]]:.3g}, following updates with "
            f"{_lr_phrase(lrs[:step])}: the update saturated every unit",
            0.8, {"step": step}))
        return findings
    for i in logged[1:]:
        earlier = norms[logged[logged < i]]
        ref = float(np.median(earlier)) if earlier.size else 0.0
        if ref > 0 and norms[i] > GRAD_NORM_GROWTH * ref:
            findings.append(Finding(
                "lr_divergence",
                f"gradient norm exploded: {norms[i]:.3g} at step {i}, {norms[i] / ref:.3g} times the median "
                f"{ref:.3g} of the earlier steps, with {_lr_phrase(lrs[:i + 1])}",
                0.6, {"step": int(i)}))
            break
    return findings


# float8 e4m3fn: largest finite 448, smallest subnormal 2^-9. No Inf: overflow gives NaN.
FP8_E4M3_MAX = 448.0
FP8_E4M3_MIN_SUBNORMAL = 2.0**-9


def diagnose_fp8_range(values: ArrayLike, scale: float = 1.0) -> list[Finding]:
    """Flag values that a cast ``values / scale`` to float8 e4m3 would turn into NaN or zero.

    Args:
        values: the tensor about to be quantised (any shape; numpy-convertible).
        scale: the dequantisation scale (amax / 448 for a proper block scale).

    Returns:
        [] when every value is representable, else Findings quoting how many overflow (|x| > 448)
        and how many non-zero values underflow (|x| < 2^-9) after scaling.
    """
    x = np.abs(np.asarray(values, dtype=np.float64).reshape(-1)) / scale
    findings = []
    over = int(np.sum(x > FP8_E4M3_MAX))
    if over:
        findings.append(Finding(
            "fp8_range",
            f"fp8 e4m3 overflow: {over} of {x.size} values exceed 448 after scaling (max |x| = {x.max():.4g}); "
            f"e4m3fn has no Inf, so they become NaN",
            0.95, {"overflow": over, "amax": float(x.max())},
        ))
    under = int(np.sum((x > 0) & (x < FP8_E4M3_MIN_SUBNORMAL)))
    if under:
        findings.append(Finding(
            "fp8_range",
            f"fp8 e4m3 underflow: {under} of {x.size} non-zero values are below 2^-9 after scaling and flush to 0",
            0.8, {"underflow": under},
        ))
    return findings


# Input pipeline: if more than 20% of a step is spent waiting for the next batch, the device idles a
# fifth of the time; with prefetching the wait should be close to zero.
INPUT_WAIT_LIMIT = 0.2


def diagnose_input_pipeline(wait_seconds: float, step_seconds: float) -> list[Finding]:
    """Flag an input-bound training loop from the time spent waiting for data.

    Args:
        wait_seconds: time blocked on the next batch, summed over the measured steps.
        step_seconds: total wall time of the same steps (waiting included).

    Returns:
        [] when the wait share is at most INPUT_WAIT_LIMIT, else one Finding quoting the share.
    """
    if step_seconds <= 0 or wait_seconds < 0 or wait_seconds > step_seconds * (1 + 1e-9):
        raise ValueError(f"need 0 <= wait_seconds <= step_seconds and step_seconds > 0, got {wait_seconds}, {step_seconds}")
    share = wait_seconds / step_seconds
    if share <= INPUT_WAIT_LIMIT:
        return []
    return [Finding(
        "slow_input_pipeline",
        f"input pipeline stall: {100 * share:.0f}% of step time spent waiting for data "
        f"({wait_seconds:.3f}s of {step_seconds:.3f}s; limit {100 * INPUT_WAIT_LIMIT:.0f}%)",
        0.95, {"wait_share": share},
    )]


# ---------------------------------------------------------------------------------------- numbers in a log
_NUMBER = r"([-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:e[-+]?\d+)?))"
_LOSS_RE = re.compile(r"\bloss\s*[=:]\s*" + _NUMBER, re.IGNORECASE)
_GRAD_NORM_RE = re.compile(r"\bgrad(?:ient)?[_ ]norm\s*[=:]\s*" + _NUMBER, re.IGNORECASE)
_LR_RE = re.compile(r"\b(?:lr|learning[_ ]rate)\s*[=: ]\s*" + _NUMBER, re.IGNORECASE)
_LOAD_RE = re.compile(r"\bexpert_load\s*[=:]\s*\[([^\]]*)\]", re.IGNORECASE)


def signals_from_log(text: str) -> list[Finding]:
    """Run the live checks on numbers found in a log.

    ``loss=...`` values (three or more) go through diagnose_loss_history and each ``expert_load=[...]``
    vector through diagnose_expert_load. Logged ``grad_norm=...`` and ``lr=...``/``lr 1e-3`` values
    cannot be aligned by step from free text, so the gradient-norm check here is the plain one: a
    non-finite logged gradient norm after a logged lr >= LR_HIGH is an lr divergence (weight 0.9),
    without a high lr a weaker one (0.5).

    Args:
        text: the log.

    Returns:
        the Findings, loss-history ones first.
    """
    findings: list[Finding] = []
    losses = [float(v) for v in _LOSS_RE.findall(text)]
    if len(losses) >= 3:
        findings += diagnose_loss_history(losses)
    norms = np.asarray([float(v) for v in _GRAD_NORM_RE.findall(text)], dtype=np.float64)
    lrs = np.asarray([float(v) for v in _LR_RE.findall(text)], dtype=np.float64)
    if norms.size and not np.all(np.isfinite(norms)):
        high = bool(np.any(np.isfinite(lrs) & (lrs >= LR_HIGH)))
        first_bad = norms[~np.isfinite(norms)][0]
        findings.append(Finding(
            "lr_divergence",
            f"gradient norm diverged: a logged grad_norm is {first_bad} with {_lr_phrase(lrs)}"
            + (f" (>= {LR_HIGH:g}: too high for AdamW)" if high else ""),
            0.9 if high else 0.5, {"lr_max": float(np.nanmax(lrs)) if lrs.size else None}))
    for match in _LOAD_RE.finditer(text):
        try:
            counts = [float(v) for v in match.group(1).replace(",", " ").split()]
            findings += diagnose_expert_load(counts)
        except ValueError:
            continue
    return findings
