"""A float64 oracle for the logits: how far each fp32 model is from the exact answer.

Two correct fp32 implementations of the same formulas differ by the sum of their own rounding
errors. At ``tiny`` that sum is far below the logits tolerance (1e-5), so TF against Flax decides.
At ``bench`` (width 1024, six blocks, logits up to ~5) each model alone is ~7e-6 from the exact
answer, measured here, so their difference can exceed 1e-5 with neither being wrong: the
TF-vs-Flax comparison can then no longer tell a bug from fp32 noise, and a tolerance raised until it
passes would hide real bugs at ``tiny`` too.

The oracle settles it without raising anything: the Flax reference, its weights cast to float64, runs
under ``jax.enable_x64`` (rounding ~1e-16, negligible). Each logits quantity gets a gating row, TF
against float64, judged by the same logits tolerance: TF must be within 1e-5 of the exact answer.
Flax's own fp32 distance from float64 is shown beside it (INFO), as the measured floor. The
TF-vs-Flax rows keep gating, except a row that fails where the floor shows the comparison cannot
decide (Flax alone more than half the tolerance from exact): it is shown as INFO with the floor as the
reason, and its float64 row, which always gates, decides.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import numpy as np

from harness.interop.rows import Row, compare_row, routing_agreement
from harness.interop.tolerances import TOLERANCES

ORACLE = "float64 oracle"


def float64_logits(flax_model: Any, tokens: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """The Flax reference's logits in float64: ``[model(tokens), forward_aux logits, MTP logits 1..D]``,
    each float64 ``[B, T(-k), V]``, and the float64 run's routing (``{"router_indices": ...}``).

    Args:
        flax_model: a ``reference.model.Transformer`` holding fp32 weights (left unchanged).
        tokens: int token ids ``[B, T]``.

    Returns:
        the float64 logits in the order above, and the routing dict.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        model = copy.copy(flax_model)  # a shallow copy: the fp32 model keeps its own weights
        widen = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        model.params = jax.tree.map(widen, flax_model.params)
        model.biases = jax.tree.map(widen, flax_model.biases)
        logits = model(tokens)
        aux_logits, aux = model.forward_aux(tokens)
        out = [np.asarray(logits, np.float64), np.asarray(aux_logits, np.float64)]
        out += [np.asarray(m, np.float64) for m in aux["mtp_logits"]]
        routing = {"router_indices": jax.tree.map(np.asarray, aux["router_indices"])}
    return out, routing


def oracle_rows(names: list[str], tf_values: list, flax_values: list, flax_model: Any, tokens: np.ndarray,
                aux_tf: dict, tf_vs_flax: list[Row]) -> list[Row]:
    """Float64-oracle rows for the logits quantities, and the TF-vs-Flax rows re-judged by the floor.

    Args:
        names: one label per logits quantity (``model(tokens)``, ``forward_aux``, MTP module k, ...).
        tf_values: TF's fp32 values of those quantities, in the order of ``float64_logits``.
        flax_values: Flax's fp32 values, the same order.
        flax_model: the fp32 Flax reference, run again in float64 here.
        tokens: the token ids ``[B, T]`` all of them were computed from.
        aux_tf: TF's ``forward_aux`` extras (routing of the TF run).
        tf_vs_flax: the TF-vs-Flax rows of the same quantities, in the same order.

    Returns:
        the TF-vs-Flax rows (gating; a failing one INFO where the floor exceeds half the tolerance), then
        per quantity the gating TF-vs-float64 row and the Flax-vs-float64 floor row (INFO).
    """
    exact, aux64 = float64_logits(flax_model, tokens)
    routing = routing_agreement(aux_tf, aux64)
    tol = TOLERANCES["logits"]
    judged, oracle = [], []
    for name, a, f, e, row in zip(names, tf_values, flax_values, exact, tf_vs_flax):
        floor = compare_row(f"{ORACLE}: {name}, Flax fp32 vs float64 (the fp32 floor)", f, e, "logits")
        tf_row = compare_row(f"{ORACLE}: {name}, TF fp32 vs float64", a, e, "logits", routing=routing)
        oracle += [tf_row, replace(floor, gate=False, note=f"Flax's own fp32 error: {floor.max_abs_err:.3g}")]
        # Only a finite floor is fp32 noise: NaN/Inf (overflowing logits) is a failure on either side and gates.
        noise = np.isfinite(np.asarray(f)).all() and math.isfinite(floor.max_abs_err)
        if noise and floor.max_abs_err > tol.atol / 2 and not row.passed:
            row = replace(row, gate=False, note=(
                f"fp32 floor: Flax alone is {floor.max_abs_err:.3g} from float64, over half the tolerance, so "
                f"two correct fp32 models may differ by more than it; gated by the float64 row instead"))
        judged.append(row)
    return judged + oracle
