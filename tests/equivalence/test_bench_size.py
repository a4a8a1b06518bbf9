"""Equivalence at the bench model's sizes, where the e4m3 rounding difference hid while tiny passed.

Default suite: the FP8 block checks at ``ModelConfig.bench()`` widths (no model is built) and the FP8 rows'
power to name a framework that rounds differently. The ``bench-layer`` config (one MoE block at bench
widths) runs with the tiny configs in ``test_equivalence.py``. ``-m slow``: every check at ``bench``.
"""

from __future__ import annotations

import pytest

from harness.config import ModelConfig
from harness.interop import equivalence as eq
from harness.interop.rows import summary
from tests.equivalence.conftest import rows_for


def _failures(rows) -> str:
    return "\n".join(f"{r.component}: {r.note}" for r in rows if r.gate and not r.passed)


def test_fp8_blocks_at_bench_widths_match_the_oracle_bit_for_bit():
    rows = rows_for("bench", ("fp8_blocks",))
    names = " | ".join(r.component for r in rows)
    for part in ("tie cases", "quantize_weight", "quantize_act: widths [128, 256, 512, 1024, 1536]", "fp8 matmul"):
        assert part in names, part
    assert all(r.passed and r.gate for r in rows), _failures(rows)
    worst = max(r.error_over_tolerance for r in rows)
    assert summary(rows) == {"passed": 4, "total": 4, "worst": pytest.approx(worst), "context": 0}


def test_fp8_block_rows_name_the_framework_that_rounds_differently(monkeypatch):
    """The scale as XLA used to compute it under tf.function (amax times fp32(1/448), one ulp off for about
    half of all blocks) must fail the row and name TF's XLA path, not pass as 'close enough'."""
    import tensorflow as tf

    from tf_impl import fp8 as tf8

    monkeypatch.setattr(tf8, "_block_scale", lambda amax: tf.maximum(amax, tf8.MIN_AMAX) * (1.0 / tf8.E4M3_MAX))
    rows = eq.compare(ModelConfig.tiny(), checks=("fp8_blocks",))
    ties = rows[0]
    assert not ties.passed and "TF eager" in ties.note and "Flax" not in ties.note
    assert ties.error_over_tolerance == float("inf")  # an exact check that differs


@pytest.mark.slow
def test_every_check_at_bench():
    rows = rows_for("bench", eq.ALL)
    numbers = summary(rows)
    assert numbers["passed"] == numbers["total"] and numbers["worst"] <= 1.0, _failures(rows)
    fp8_model = [r for r in rows if r.component.startswith("fp8 mode")]
    assert len(fp8_model) == 2
    for row in fp8_model:  # gating and passing, or shown as context with the control's numbers beside it
        assert (row.gate and row.passed) or (not row.gate and "control" in row.note), row
