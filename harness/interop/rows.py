"""One compared quantity of the equivalence suite (``Row``), how two arrays become one (``compare_row``), and
the summaries the CLI and the asv benchmarks read (``summary``, ``format_table``).

The TF side is always the first operand (``a``), the reference the second (``b``); relative errors are
taken against the reference. A NaN or Inf in either operand fails its row, even where both sides agree on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from harness.interop.tolerances import REQUIRED_ROUTING_AGREEMENT, TOLERANCES, Tolerance


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


def compare_row(component: str, a: ArrayLike, b: ArrayLike, key: str, routing: float | None = None,
                note: str = "") -> Row:
    """TF's ``a`` against the reference's ``b``, judged by ``TOLERANCES[key]``.

    Args:
        component: what the row compares, as the table shows it.
        a: the TF value (any array-like).
        b: the reference (Flax) value, the same shape.
        key: the entry of ``TOLERANCES`` that judges it.
        routing: the expert-set agreement behind the values; the row fails below ``REQUIRED_ROUTING_AGREEMENT``.
        note: shown beside a failing verdict; the count of non-finite values is prepended when there are any.

    Returns:
        the Row: a shape mismatch or a NaN/Inf on either side fails it.
    """
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


def merge_rows(component: str, rows: Sequence[Row], note: str = "") -> Row:
    """One row summarising several comparisons of the same quantity (worst error, all must pass).

    Args:
        component: the merged row's name in the table.
        rows: the comparisons to merge, at least one; the first one's tolerance is reported.
        note: the merged row's note; "" lists up to three failed rows' notes (or names).

    Returns:
        a Row with the largest errors, the lowest routing agreement, and ``passed`` only when every row passed.
    """
    routing = [r.routing_agreement for r in rows if r.routing_agreement is not None]
    failed = [r.note or r.component for r in rows if not r.passed]
    return Row(component, max(r.max_abs_err for r in rows), max(r.max_rel_err for r in rows), rows[0].tolerance,
               min(routing) if routing else None, not failed,
               note or (f"failed: {', '.join(failed[:3])}" if failed else ""),
               max(r.error_over_tolerance for r in rows))


def expert_set_agreement(indices_a: ArrayLike, indices_b: ArrayLike) -> float:
    """Share of rows (tokens) of ``[..., K]`` index arrays whose expert sets agree (order-free).

    Rows where both sides hold -1 (MTP padding) are left out.

    Args:
        indices_a: expert indices of shape [..., K] from one side.
        indices_b: expert indices of the same shape from the other side.

    Returns:
        the agreeing share in [0, 1]; 1.0 when every row is padding.
    """
    a = np.sort(np.asarray(indices_a).reshape(-1, np.shape(indices_a)[-1]), -1)
    b = np.sort(np.asarray(indices_b).reshape(-1, np.shape(indices_b)[-1]), -1)
    valid = ~((a < 0).all(-1) & (b < 0).all(-1))
    return float((a == b).all(-1)[valid].mean()) if valid.any() else 1.0


def routing_agreement(aux_tf: Mapping[str, Any], aux_flax: Mapping[str, Any]) -> float | None:
    """Expert-set agreement over every MoE layer (main and MTP) of two ``forward_aux`` results.

    Args:
        aux_tf: the TF ``forward_aux`` dict; ``router_indices`` is one [n_moe_layers, B, T, K] array whose
            MTP layers are padded with -1 to T positions.
        aux_flax: the Flax ``forward_aux`` dict; ``router_indices`` is a list of [B, T_l, K] arrays, one per
            MoE layer (T_l = T - k for MTP module k). Each TF layer is cut to its T_l positions.

    Returns:
        the token-weighted agreement over all layers in [0, 1]; None when the model has no MoE layer.
    """
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


def summary(rows: Sequence[Row]) -> dict[str, float]:
    """The verdict of a run in numbers: gating rows ``passed`` out of ``total``, their ``worst`` error in units
    of its tolerance (1.0: at the limit), and the ``context`` rows (INFO) left out of both."""
    gating = [r for r in rows if r.gate]
    return {"passed": sum(bool(r.passed) for r in gating), "total": len(gating),
            "worst": max((r.error_over_tolerance for r in gating), default=0.0), "context": len(rows) - len(gating)}


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


def within(a: ArrayLike, b: ArrayLike, key: str) -> bool:
    """True when ``a`` is within ``TOLERANCES[key]`` of ``b`` (for checks outside this module, e.g. the
    distributed-vs-single-device comparisons of experiments.distributed).

    Args:
        a: the value under test (any array-like).
        b: the value it should match, the same shape; relative errors are taken against it.
        key: the entry of ``TOLERANCES`` that judges it.

    Returns:
        True when the shapes match, both sides are finite and every element is within tolerance.
    """
    return _within(a, b, TOLERANCES[key])


def over_tolerance(a: ArrayLike, b: ArrayLike, key: str) -> float:
    """Worst ``|a - b| / (atol + rtol * scale)`` under ``TOLERANCES[key]`` (1.0 is at the limit).

    Args:
        a: the value under test (any array-like).
        b: the value it should match, the same shape.
        key: the entry of ``TOLERANCES`` that judges it.

    Returns:
        the worst ratio: at most 1.0 passes; inf where a non-finite value appears or an exact quantity differs.
    """
    return _over_tolerance(a, b, TOLERANCES[key])
